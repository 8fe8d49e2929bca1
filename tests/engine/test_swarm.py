"""The same command on a single-node swarm: a stack service deployed with Swarm's own rolling update (start-first,
rolled back by Swarm on a failure), under load through HAProxy, with the exit codes of a compose deploy. The swarm
is made for this module and left again afterwards."""

import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from typing import Dict

import pytest

from dockerfixtures import ROOT, docker, finish, free_port, load_on, read_until, versions_after

STACK_FILE = os.path.join(ROOT, "tests", "stacks", "swarm", "stack.yaml")


@dataclass
class SwarmStack:
    """A stack deployed from tests/stacks/swarm, shaped like a compose project for the load helpers."""

    name: str
    env: Dict[str, str]
    directory: str = os.path.dirname(STACK_FILE)
    runs: list = field(default_factory=list)

    def deploy(self, **env: str) -> None:
        docker("stack", "deploy", "--resolve-image", "never", "-c", STACK_FILE, self.name,
               env={**self.env, **env})

    def reroll(self, *args: str, extra_env=None, timeout=240):
        result = subprocess.run(["docker", "reroll", *args], capture_output=True, text=True, cwd=self.directory,
                                env={**self.env, **(extra_env or {})}, timeout=timeout)
        print(f"--- docker reroll {' '.join(args)} -> {result.returncode}\n{result.stderr}")
        return result

    def compose(self, *args, check=False, **_kwargs):  # what explain_failures asks for: the proxy's log
        return docker("service", "logs", "--raw", f"{self.name}_proxy", check=False)

    def tasks(self, service="app"):
        """The running tasks' (id, APP_VERSION)."""
        ids = docker("service", "ps", "--quiet", "--no-trunc", "--filter", "desired-state=running",
                     f"{self.name}_{service}").stdout.split()
        found = json.loads(docker("inspect", "--type", "task", *ids).stdout) if ids else []
        return sorted((t["ID"], dict(e.split("=", 1) for e in t["Spec"]["ContainerSpec"]["Env"])["APP_VERSION"])
                      for t in found if t["Status"]["State"] == "running")

    def update_state(self, service="app"):
        status = json.loads(docker("service", "inspect", f"{self.name}_{service}").stdout)[0].get("UpdateStatus")
        return (status or {}).get("State")

    def wait_ready(self, replicas=3, timeout=90):
        from urllib.request import urlopen

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.tasks()) == replicas:
                try:
                    with urlopen(f"http://127.0.0.1:{self.env['PROXY_PORT']}/", timeout=2) as answer:
                        if answer.status == 200:
                            time.sleep(1.5)  # every task healthy in HAProxy's eyes too
                            return
                except OSError:
                    pass
            time.sleep(0.5)
        raise AssertionError(f"stack {self.name} never got ready: {self.tasks()}")

    def remove(self):
        docker("stack", "rm", self.name, check=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and docker("network", "ls", "--quiet", "--filter",
                                                     f"label=com.docker.stack.namespace={self.name}").stdout.strip():
            time.sleep(0.5)


@pytest.fixture(scope="module")
def swarm(base_env, stack_images):
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    made = state != "active"
    if made:
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    yield
    if made:
        docker("swarm", "leave", "--force", check=False)


@pytest.fixture
def swarm_stack(swarm, base_env):
    stack = SwarmStack("rs" + uuid.uuid4().hex[:8], {**base_env, "PROXY_PORT": str(free_port())})
    stack.deploy()
    try:
        stack.wait_ready()
        yield stack
    finally:
        stack.remove()


def test_a_deploy_under_load_is_swarms_start_first_update_with_zero_failed_requests(swarm_stack):
    stack = swarm_stack
    old = stack.tasks()
    assert [version for _, version in old] == ["v1"] * 3

    with load_on(stack, clients=8, rate=300) as load:
        deployed = time.time()
        run = stack.reroll("--stack", stack.name, "-f", "stack.yaml", "--progress", "json", "app",
                           extra_env={"APP_VERSION": "v2"})
        finished = time.time()

    report = load.report()
    assert run.returncode == 0, run.stderr
    assert report.failed == 0 and report.total > 500, report.summary()
    new = stack.tasks()
    assert [version for _, version in new] == ["v2"] * 3 and not {i for i, _ in old} & {i for i, _ in new}
    assert versions_after(report, finished + 0.5) == {"v2"} and "v1" in versions_after(report, deployed - 1)
    events = [json.loads(line) for line in run.stderr.splitlines()]
    summary = events[-1]
    assert summary["outcome"] == "deployed" and summary["exit_code"] == 0
    assert sorted(t["id"] for t in summary["services"][0]["new"]) == sorted(i for i, _ in new)
    assert any(e["type"] == "log" and "start-first" in e["message"] for e in events)
    assert stack.update_state() == "completed"


def test_a_broken_version_is_rolled_back_by_swarm_exit_1_and_v1_keeps_serving(swarm_stack):
    stack = swarm_stack
    old = stack.tasks()

    with load_on(stack, clients=8, rate=300) as load:
        run = stack.reroll("--stack", stack.name, "-f", "stack.yaml", "--healthcheck-timeout", "30", "app",
                           extra_env={"APP_VERSION": "v2", "APP_BROKEN": "1"})

    report = load.report()
    assert run.returncode == 1, run.stderr
    assert f"Swarm rolled {stack.name}_app back" in run.stderr
    assert "summary: app failed (rolled back); exit 1" in run.stderr
    assert report.failed == 0 and report.total > 300, report.summary()
    assert versions_after(report, 0) == {"v1"}
    assert stack.update_state() == "rollback_completed"
    assert [version for _, version in stack.tasks()] == ["v1"] * 3 and len(old) == 3


def test_an_interrupt_during_the_update_asks_swarm_to_roll_back(swarm_stack):
    stack = swarm_stack
    env = {**stack.env, "APP_VERSION": "v2", "APP_STARTUP_DELAY": "8", "APP_START_PERIOD": "30s"}
    with load_on(stack, clients=8, rate=300) as load:
        process = subprocess.Popen(["docker", "reroll", "--stack", stack.name, "-f", "stack.yaml", "app"],
                                   cwd=stack.directory, env=env, text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
        read_until(process, "updating Swarm service")
        time.sleep(2)
        interrupted = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        rest = finish(process, timeout=120)
        took = time.monotonic() - interrupted

    assert process.returncode == 130, rest
    assert "asking Swarm to roll" in rest and "Swarm rolled" in rest
    assert load.report().failed == 0, load.report().summary()
    assert [version for _, version in stack.tasks()] == ["v1"] * 3
    assert stack.update_state() == "rollback_completed"
    print(f"interrupt to exit: {took:.1f}s")


def test_a_stack_service_is_found_without_stack_and_pre_stop_is_refused(swarm_stack, tmp_path):
    stack = swarm_stack
    found = subprocess.run(["docker", "reroll", "--image", "reroll-example-app:latest", "app"],
                           capture_output=True, text=True, cwd=str(tmp_path), env=stack.env, timeout=240)
    refused = stack.reroll("--stack", stack.name, "--pre-stop-cmd", "true", "app")
    before = stack.tasks()
    dry = stack.reroll("--stack", stack.name, "--dry-run", "--image", "reroll-example-app:next", "app")
    batched = stack.reroll("--stack", stack.name, "-f", "stack.yaml", "--dry-run", "app",
                           extra_env={"UPDATE_PARALLELISM": "1", "APP_VERSION": "v2"})

    assert found.returncode == 0, found.stderr
    assert f"updating Swarm service {stack.name}_app" in found.stderr
    assert refused.returncode == 3 and "stop_grace_period" in refused.stderr
    assert dry.returncode == 0, dry.stderr
    assert "docker service update --detach --update-order start-first" in dry.stderr
    assert "--image reroll-example-app:next" in dry.stderr and "image reroll-example-app:latest -> " \
        "reroll-example-app:next" in dry.stderr
    assert stack.tasks() == before and "summary: dry run; exit 0" in dry.stderr
    assert batched.returncode == 0, batched.stderr
    assert "--update-parallelism 1 " in batched.stderr and "APP_VERSION=v2" in batched.stderr, "the file's settings"


def test_an_update_swarm_is_already_running_is_respected_with_exit_4(swarm_stack):
    """Swarm keeps the state of an update, so that is what tells a run that another deploy is at work."""
    stack = swarm_stack
    docker("service", "update", "--detach", "--env-add", "APP_STARTUP_DELAY=6", "--env-add", "APP_VERSION=v3",
           f"{stack.name}_app")

    run = stack.reroll("--stack", stack.name, "--image", "reroll-example-app:latest", "app")
    dry = stack.reroll("--stack", stack.name, "--dry-run", "app")

    assert run.returncode == 4, run.stderr
    assert f"Swarm is already updating {stack.name}_app" in run.stderr
    assert "summary: app locked; exit 4" in run.stderr
    assert dry.returncode == 4 and "Swarm is updating it now (updating since" in dry.stderr


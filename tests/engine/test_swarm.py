"""The same command on a single-node swarm: a stack service deployed with Swarm's own rolling update (start-first,
rolled back by Swarm on a failure), under load through HAProxy, with the exit codes of a compose deploy. The swarm
is made for this module and left again afterwards."""

import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from typing import Dict
from urllib.request import urlopen

import pytest

from dockerfixtures import (
    JSON_STREAM,
    LOAD_RATE,
    ROOT,
    Run,
    Stream,
    docker,
    finish_json,
    free_port,
    load_on,
    read_until_said,
    versions_after,
)

# One swarm for the module, on one test worker: tests elsewhere run beside it on the same engine.
pytestmark = pytest.mark.xdist_group("swarm")
STACK_FILE = os.path.join(ROOT, "tests", "stacks", "swarm", "stack.yaml")
REGISTRY_STACK_FILE = os.path.join(ROOT, "tests", "stacks", "swarm", "registry.yaml")
REGISTRY = "127.0.0.1:5000"  # Debian's docker-registry, started by scripts/provision.sh


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

    def reroll(self, *args: str, extra_env=None, timeout=240, cwd=None):
        result = subprocess.run(["docker", "reroll", *args], capture_output=True, text=True,
                                cwd=cwd or self.directory, env={**self.env, **(extra_env or {})}, timeout=timeout)
        print(f"--- docker reroll {' '.join(args)} -> {result.returncode}\n{result.stderr}")
        return result

    def reroll_json(self, *args: str, extra_env=None, **how) -> Stream:
        """`reroll`, its progress the JSON stream, parsed."""
        started = time.monotonic()
        result = self.reroll(*args, extra_env={**(extra_env or {}), **JSON_STREAM}, **how)
        return Stream.of(Run(result.returncode, result.stdout, result.stderr, time.monotonic() - started))

    def compose(self, *args, check=False, **_kwargs):  # what explain_failures asks for: the proxy's log
        return docker("service", "logs", "--raw", f"{self.name}_proxy", check=False)

    def tasks(self, service="app"):
        """The running tasks' (id, APP_VERSION)."""
        return sorted((t["ID"], dict(e.split("=", 1) for e in t["Spec"]["ContainerSpec"]["Env"])["APP_VERSION"])
                      for t in self.running_tasks(service))

    def running_tasks(self, service="app"):
        """The inspected tasks that run."""
        # Swarm's manager, busy beside parallel tests, has failed a `service ps` now and then (seen in CI), and a
        # task listed may be gone by its inspect: ask again, and read the tasks the inspect still found.
        deadline = time.monotonic() + 20
        while True:
            listed = docker("service", "ps", "--quiet", "--no-trunc", "--filter", "desired-state=running",
                            f"{self.name}_{service}", check=False)
            if listed.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert listed.returncode == 0, f"docker service ps {self.name}_{service}: {listed.stderr.strip()}"
        ids = listed.stdout.split()
        found = json.loads(docker("inspect", "--type", "task", *ids, check=False).stdout or "[]") if ids else []
        return [t for t in found if t["Status"]["State"] == "running"]

    def settled_tasks(self, count, service="app", timeout=20):
        """The running tasks once there are `count` of them: a task Swarm is replacing may still run a moment after
        the update's state says it ended."""
        deadline = time.monotonic() + timeout
        while len(self.tasks(service)) != count and time.monotonic() < deadline:
            time.sleep(0.5)
        return self.tasks(service)

    def inspect(self, service="app"):
        return json.loads(docker("service", "inspect", f"{self.name}_{service}").stdout)[0]

    def update_state(self, service="app"):
        return (self.inspect(service).get("UpdateStatus") or {}).get("State")

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
        """The stack, and its network once its last task has left it: `docker stack rm` tries that only once, and
        a task still stopping then keeps the network (seen here, left behind for good)."""
        docker("stack", "rm", self.name, check=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            networks = docker("network", "ls", "--quiet", "--filter",
                              f"label=com.docker.stack.namespace={self.name}").stdout.split()
            if not networks:
                return
            time.sleep(0.5)
            docker("network", "rm", *networks, check=False)


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
def make_swarm_stack(swarm, base_env):
    """Stacks from tests/stacks/swarm/stack.yaml, deployed with these variables (APP_REPLICAS, UPDATE_MONITOR...)
    and ready, removed afterwards."""
    made = []

    def make(**env):
        stack = SwarmStack("rs" + uuid.uuid4().hex[:8], {**base_env, "PROXY_PORT": str(free_port()), **env})
        made.append(stack)
        stack.deploy()
        stack.wait_ready(replicas=int(env.get("APP_REPLICAS", 3)))
        return stack

    yield make
    for stack in made:
        stack.remove()


@pytest.fixture
def swarm_stack(make_swarm_stack):
    return make_swarm_stack()


@pytest.fixture(scope="module")
def registry():
    """The local registry: missing, it is a failure (provisioning starts it), never a skip."""
    try:
        with urlopen(f"http://{REGISTRY}/v2/", timeout=5) as answer:
            assert answer.status == 200
    except (OSError, AssertionError) as error:
        pytest.fail(f"no registry answers on {REGISTRY} ({error}): run scripts/provision.sh, which installs "
                    "Debian's docker-registry and starts it there", pytrace=False)
    return REGISTRY


def recording_docker(directory):
    """A `docker` that records each call's arguments (one line each) in directory/argv.log, then runs the real one
    under its own name, so the docker CLI tells the plugin to call it too (DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND)."""
    real = shutil.which("docker")
    os.makedirs(directory, exist_ok=True)
    wrapper = os.path.join(directory, "docker")
    with open(wrapper, "w") as handle:
        handle.write(textwrap.dedent(f"""\
            #!/bin/bash
            printf '%s\\n' "$*" >> {directory}/argv.log
            exec -a "$0" {real} "$@"
            """))
    os.chmod(wrapper, 0o755)
    return wrapper


def test_a_deploy_under_load_is_swarms_start_first_update_with_zero_failed_requests(swarm_stack):
    stack = swarm_stack
    old = stack.tasks()
    assert [version for _, version in old] == ["v1"] * 3

    with load_on(stack) as load:
        deployed = time.time()
        run = stack.reroll_json("--stack", stack.name, "-f", "stack.yaml", "app", extra_env={"APP_VERSION": "v2"})
        finished = time.time()

    report = load.report()
    assert run.returncode == 0 and run.outcome == "deployed" and run.summary["exit_code"] == 0, run
    assert report.failed == 0 and report.total > 2.5 * LOAD_RATE, report.summary()  # 2.5 s of load at least
    new = stack.tasks()
    assert [version for _, version in new] == ["v2"] * 3 and not {i for i, _ in old} & {i for i, _ in new}
    assert versions_after(report, finished + 0.5) == {"v2"} and "v1" in versions_after(report, deployed - 1)
    [app] = run.summary["services"]
    assert sorted(t["id"] for t in app["new"]) == sorted(i for i, _ in new)
    assert sorted(t["id"] for t in app["old"]) == sorted(i for i, _ in old)
    assert app["update_state"] == "completed" and run.phases("app")[-1] == "update"
    assert run.said("start-first", "info")
    assert stack.update_state() == "completed"


def test_a_broken_version_is_rolled_back_by_swarm_exit_1_and_v1_keeps_serving(swarm_stack):
    stack = swarm_stack
    old = stack.tasks()

    with load_on(stack) as load:
        run = stack.reroll_json("--stack", stack.name, "-f", "stack.yaml", "--healthcheck-timeout", "30", "app",
                                extra_env={"APP_VERSION": "v2", "APP_BROKEN": "1"})

    report = load.report()
    assert run.returncode == 1 and run.summary["exit_code"] == 1 and run.outcome == "rolled back", run
    assert run.result("app") == "failed (rolled back)"
    assert run.summary["services"][0]["update_state"] == "rollback_completed", "Swarm rolled it back"
    assert report.failed == 0 and report.total > 1.5 * LOAD_RATE, report.summary()  # 1.5 s of load at least
    assert versions_after(report, 0) == {"v1"}
    assert stack.update_state() == "rollback_completed"
    assert [version for _, version in stack.settled_tasks(3)] == ["v1"] * 3 and len(old) == 3


def test_an_interrupt_during_the_update_asks_swarm_to_roll_back(swarm_stack):
    stack = swarm_stack
    env = {**stack.env, **JSON_STREAM, "APP_VERSION": "v2", "APP_STARTUP_DELAY": "8", "APP_START_PERIOD": "30s"}
    with load_on(stack) as load:
        process = subprocess.Popen(["docker", "reroll", "--stack", stack.name, "-f", "stack.yaml", "app"],
                                   cwd=stack.directory, env=env, text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
        seen = read_until_said(process, "updating Swarm service", "info")
        time.sleep(2)
        interrupted = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        run = finish_json(process, seen, timeout=120)
        took = time.monotonic() - interrupted

    assert run.returncode == 130 and run.summary["exit_code"] == 130 and run.outcome == "interrupted", run
    assert run.phases("app")[-2:] == ["update", "roll back"], "the interrupt asked Swarm to roll back"
    assert run.said("asking Swarm to roll", "warn"), "not a roll-back Swarm began by itself"
    assert run.result("app") == "interrupted (rolled back)"
    assert run.summary["services"][0]["update_state"] == "rollback_completed", "Swarm rolled it back"
    assert load.report().failed == 0, load.report().summary()
    assert [version for _, version in stack.settled_tasks(3)] == ["v1"] * 3
    assert stack.update_state() == "rollback_completed"
    print(f"interrupt to exit: {took:.1f}s")


def test_a_stack_service_is_found_without_stack_and_pre_stop_is_refused(swarm_stack, tmp_path):
    stack = swarm_stack
    found = stack.reroll_json("--image", "reroll-example-app:latest", "app", cwd=str(tmp_path))
    refused = stack.reroll_json("--stack", stack.name, "--pre-stop-cmd", "true", "app")
    before = stack.tasks()
    dry = stack.reroll_json("--stack", stack.name, "--dry-run", "--image", "reroll-example-app:next", "app")
    batched = stack.reroll_json("--stack", stack.name, "-f", "stack.yaml", "--dry-run", "app",
                                extra_env={"UPDATE_PARALLELISM": "1", "APP_VERSION": "v2"})

    assert found.returncode == 0 and found.outcome == "deployed" and "update" in found.phases("app"), found
    assert {t["name"].rsplit(".", 1)[0] for t in found.summary["services"][0]["new"]} == {f"{stack.name}_app"}
    assert refused.returncode == 3 and refused.outcome == "refused", refused
    assert refused.said("stop_grace_period", "error"), "the way to drain a Swarm service is said"
    assert dry.returncode == 0 and dry.outcome == "dry run" and dry.summary["exit_code"] == 0, dry
    assert dry.plan("app")["args"] == ["--image", "reroll-example-app:next", "--force"]  # nothing else
    assert "image reroll-example-app:latest -> reroll-example-app:next" in dry.plan("app")["changes"]
    assert stack.tasks() == before
    assert batched.returncode == 0 and batched.outcome == "dry run", batched
    args = batched.plan("app")["args"]
    assert args[args.index("--update-parallelism") + 1] == "1", "the file's"
    assert "APP_VERSION changed" in batched.plan("app")["changes"], "the file's"


def test_an_update_swarm_is_already_running_is_respected_with_exit_4(swarm_stack):
    """Swarm keeps the state of an update, so that is what tells a run that another deploy is at work."""
    stack = swarm_stack
    docker("service", "update", "--detach", "--env-add", "APP_STARTUP_DELAY=6", "--env-add", "APP_VERSION=v3",
           f"{stack.name}_app")

    run = stack.reroll_json("--stack", stack.name, "--image", "reroll-example-app:latest", "app")
    dry = stack.reroll_json("--stack", stack.name, "--dry-run", "app")

    assert run.returncode == 4 and run.summary["exit_code"] == 4 and run.outcome == "locked", run
    assert run.result("app") == "locked" and "update" not in run.phases("app")
    assert run.said(f"Swarm is already updating {stack.name}_app", "error"), "Swarm's update holds it, not a lock"
    assert dry.returncode == 4 and dry.outcome == "dry run: locked", dry
    assert dry.plan("app")["update_state"] == "updating" and dry.plan("app")["lock"]["holder"] is None



def test_a_re_pushed_tag_reaches_the_tasks_as_docker_stack_deploy_resolves_it(swarm, registry, base_env, tmp_path):
    """`docker stack deploy` pins `app:latest` to its digest; after `latest` is pushed again, a deploy must resolve
    the tag again (not restart the tasks on the old digest)."""
    repository = f"{registry}/reroll-test-{uuid.uuid4().hex[:8]}"
    image = f"{repository}:latest"
    stack = SwarmStack("rg" + uuid.uuid4().hex[:8], {**base_env, "APP_IMAGE": image})
    pushed = {}

    def push(version):
        docker("build", "-q", "-t", image, "-",
               input_text=f"FROM reroll-example-app:latest\nENV APP_VERSION={version}\n")
        output = docker("push", image).stdout
        pushed[version] = (re.search(r"digest: (sha256:[0-9a-f]{64})", output).group(1),
                           docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip())

    def running():
        """Each running task's pinned digest, its container's image id and what the app in it answers."""
        found = []
        for task in stack.running_tasks():
            container = task["Status"]["ContainerStatus"]["ContainerID"]
            answer = docker("exec", container, "python3", "-c", "import urllib.request; print(urllib.request."
                            "urlopen('http://127.0.0.1:8080/').read().decode().split()[0])").stdout.strip()
            found.append((task["Spec"]["ContainerSpec"]["Image"].partition("@")[2],
                          docker("inspect", "--format", "{{.Image}}", container).stdout.strip(), answer))
        return sorted(found)

    def wait_running(version, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if running() == [(*pushed[version], version)] * 2:
                return
            time.sleep(0.5)
        raise AssertionError(f"never 2 tasks of {version}: {running()}")

    try:
        started = time.monotonic()
        push("reg-v1")
        docker("stack", "deploy", "-c", REGISTRY_STACK_FILE, stack.name, env=stack.env)
        wait_running("reg-v1")
        assert stack.inspect()["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == f"{image}@{pushed['reg-v1'][0]}"
        push("reg-v2")  # the same tag, another image
        assert pushed["reg-v2"][0] != pushed["reg-v1"][0]

        run = stack.reroll_json("--stack", stack.name, "app", cwd=str(tmp_path))
        took = time.monotonic() - started

        assert run.returncode == 0 and run.outcome == "deployed", run
        assert stack.inspect()["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == f"{image}@{pushed['reg-v2'][0]}"
        assert running() == [(*pushed["reg-v2"], "reg-v2")] * 2  # by digest, by image id, by what the app says
        [app] = run.summary["services"]
        assert {t["image"] for t in app["old"]} == {f"{image}@{pushed['reg-v1'][0]}"}
        assert {t["image"] for t in app["new"]} == {f"{image}@{pushed['reg-v2'][0]}"}, "the tag resolved again"
        assert run.said(f"image {image} resolved again on its registry", "info")
        print(f"registry test (two pushes, stack deploy, re-pushed tag deployed): {took:.1f}s")
    finally:
        stack.remove()
        # by reference only (a cached build can share its id with another run's image), once the stopped tasks'
        # containers that still use them are gone
        references = [image, *(f"{repository}@{digest}" for digest, _ in pushed.values())]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            left = [r for r in references if docker("image", "inspect", r, check=False).returncode == 0]
            if not left or docker("image", "rm", *left, check=False).returncode == 0:
                break
            time.sleep(1)


def test_without_a_file_the_services_own_update_settings_apply_and_are_kept(make_swarm_stack, tmp_path):
    """A stack that updates one task at a time, watches the new tasks for 6 s and pauses on a failure: a deploy
    without a compose file keeps all of that, and follows the update as long as those settings make it take."""
    stack = make_swarm_stack(APP_REPLICAS="2", UPDATE_PARALLELISM="1", UPDATE_MONITOR="6s",
                             UPDATE_FAILURE_ACTION="pause")
    before = stack.inspect()["Spec"]["UpdateConfig"]
    dry = stack.reroll_json("--stack", stack.name, "--dry-run", "app", cwd=str(tmp_path), timeout=60)
    run = stack.reroll_json("--stack", stack.name, "app", cwd=str(tmp_path))

    assert dry.returncode == 0 and dry.outcome == "dry run", dry
    [plan] = dry.typed("plan")
    facts = dry.plan("app")
    assert plan["project"] == stack.name
    assert dry.setting("app", "monitor") == ("6s", "the service's own")
    assert dry.setting("app", "on failure") == ("pause", "the service's own")
    assert not [a for a in facts["args"] if a.startswith("--update-")] and facts["deadline"] == 2 * 60 + 6

    assert run.returncode == 0 and run.outcome == "deployed", run
    assert stack.inspect()["Spec"]["UpdateConfig"] == before, "the service's own settings were changed"
    new = run.summary["services"][0]["new"]
    created = sorted(json.loads(docker("inspect", "--type", "task", t["id"]).stdout)[0]["CreatedAt"] for t in new)
    seconds = [time.mktime(time.strptime(c[:19], "%Y-%m-%dT%H:%M:%S")) + float("0." + c[20:29].rstrip("Z"))
               for c in created]
    # one at a time: the second task starts once the first runs, healthy (its first check is 1 s after its start)
    assert len(seconds) == 2 and seconds[1] - seconds[0] >= 1, f"started together: {created}"


def test_environment_values_never_show_in_the_output_nor_on_a_command_line(make_swarm_stack, tmp_path):
    stack = make_swarm_stack(APP_REPLICAS="1")
    wrapper = recording_docker(str(tmp_path / "bin"))
    path = f"{os.path.dirname(wrapper)}:{stack.env['PATH']}"
    secrets = ["s3cret-dry-" + uuid.uuid4().hex, "s3cret-plain-" + uuid.uuid4().hex, "s3cret-json-" + uuid.uuid4().hex]
    runs = [stack.reroll("--stack", stack.name, "-f", "stack.yaml", *args, "app",
                         extra_env={"PATH": path, "DB_PASSWORD": secret})
            for secret, args in [(secrets[0], ("--dry-run",)), (secrets[0], ("--dry-run", "--progress", "json")),
                                 (secrets[1], ()), (secrets[2], ("--progress", "json"))]]
    with open(tmp_path / "bin" / "argv.log") as log:
        argv = log.read()

    assert [r.returncode for r in runs] == [0, 0, 0, 0], [r.stderr for r in runs]
    for run in runs:
        assert not any(secret in run.stderr + run.stdout for secret in secrets), run.stderr
        assert "DB_PASSWORD changed" in run.stderr
    assert "--env-add DB_PASSWORD " in argv and "service update" in argv, "the calls went through the wrapper"
    assert not any(secret in argv for secret in secrets), argv
    env = stack.inspect()["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
    assert f"DB_PASSWORD={secrets[2]}" in env, "the value reached the service through the CLI's environment"


def test_a_compose_file_here_does_not_start_the_service_beside_the_stack(swarm, base_env, tmp_path):
    """`docker stack deploy -c compose.yaml NAME` from a directory, then `docker reroll app` there: both the
    compose project and the stack could be meant, so it is refused, nothing changed, naming both ways to say it."""
    shutil.copy(STACK_FILE, tmp_path / "compose.yaml")
    stack = SwarmStack("rc" + uuid.uuid4().hex[:8], {**base_env, "PROXY_PORT": str(free_port())},
                       directory=str(tmp_path))
    project = os.path.basename(str(tmp_path)).lower()
    docker("stack", "deploy", "--resolve-image", "never", "-c", "compose.yaml", stack.name, env=stack.env,
           cwd=str(tmp_path))
    try:
        stack.wait_ready()
        version = stack.inspect()["Version"]["Index"]
        ambiguous = stack.reroll_json("app")
        compose_containers = docker("ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={project}")
        compose = stack.reroll_json("--stack", "", "--dry-run", "app")
        swarm_service = stack.reroll_json("--stack", stack.name, "--dry-run", "app")

        assert ambiguous.returncode == 3 and ambiguous.outcome == "refused", ambiguous
        assert ambiguous.said(f"`--stack {stack.name}` for the Swarm service, `--stack ''` for the compose project",
                              "error")
        assert compose_containers.stdout.strip() == "" and stack.inspect()["Version"]["Index"] == version
        assert compose.returncode == 0 and compose.outcome == "dry run", compose
        assert compose.typed("plan")[0]["project"] == project and "stack" not in compose.typed("plan")[0]
        assert compose.plan("app")["action"] == "roll" and compose.plan("app")["containers"] == [], "no container runs"
        assert swarm_service.returncode == 0 and swarm_service.outcome == "dry run", swarm_service
        assert swarm_service.plan("app")["swarm_service"] == f"{stack.name}_app"
    finally:
        docker("compose", "-p", project, "down", "-t", "0", cwd=str(tmp_path), env=stack.env, check=False)
        stack.remove()


def test_scale_is_applied_and_what_swarm_cannot_do_is_refused_before_any_change(swarm_stack, tmp_path):
    stack = swarm_stack
    labelled = tmp_path / "labelled.yaml"
    labelled.write_text("services:\n  app:\n    image: reroll-example-app:latest\n    labels:\n"
                        "      docker-reroll.wait-after-unhealthy: '2'\n")
    version = stack.inspect()["Version"]["Index"]
    options = stack.reroll_json("--stack", stack.name, "--drain-time", "2", "--wait", "3", "app")
    label = stack.reroll_json("--stack", stack.name, "-f", str(labelled), "app")
    dry = stack.reroll_json("--stack", stack.name, "--dry-run", "--pre-stop-wait-until-unhealthy", "app")
    unchanged = stack.inspect()["Version"]["Index"]
    scaled = stack.reroll_json("--stack", stack.name, "-f", "stack.yaml", "--scale", "app=4", "app",
                               extra_env={"APP_VERSION": "v2"})

    # each refusal names every setting Swarm has no place for, and where it came from
    assert options.returncode == 3 and options.outcome == "refused", options
    assert options.said("--drain-time (command line)", "error") and options.said("--wait (command line)", "error")
    assert label.returncode == 3 and label.outcome == "refused", label
    assert label.said("--wait-after-unhealthy (label docker-reroll.wait-after-unhealthy)", "error")
    assert dry.returncode == 3 and dry.outcome == "dry run: refused", dry
    assert "--pre-stop-wait-until-unhealthy (command line)" in dry.typed("plan")[0]["refused"]
    assert unchanged == version, "a refusal changed the service"
    assert scaled.returncode == 0 and scaled.outcome == "deployed", scaled
    [app] = scaled.summary["services"]
    assert (len(app["old"]), len(app["new"])) == (3, 4), "replicas 3 -> 4"
    assert [v for _, v in stack.tasks()] == ["v2"] * 4


def test_a_paused_update_is_reported_as_paused_not_as_rolled_back(make_swarm_stack):
    stack = make_swarm_stack(APP_REPLICAS="2", UPDATE_FAILURE_ACTION="pause")
    run = stack.reroll_json("--stack", stack.name, "-f", "stack.yaml", "--healthcheck-timeout", "30", "app",
                            extra_env={"APP_VERSION": "v2", "APP_BROKEN": "1", "UPDATE_FAILURE_ACTION": "pause"})

    assert run.returncode == 1 and run.summary["exit_code"] == 1, run
    assert run.outcome == "paused" and run.result("app") == "failed (paused)"
    assert run.summary["services"][0]["update_state"] == "paused" and stack.update_state() == "paused"
    assert "roll back" not in run.phases("app"), "nothing asked Swarm to roll back"
    assert run.said(f"Swarm paused the update of {stack.name}_app", "error"), "and how to go on is said"
    assert run.summary["message"].startswith("summary: app failed (paused); exit 1 after ")

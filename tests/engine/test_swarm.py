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

from dockerfixtures import ROOT, docker, finish, free_port, load_on, read_until, versions_after

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
    assert [version for _, version in stack.settled_tasks(3)] == ["v1"] * 3 and len(old) == 3


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
    assert [version for _, version in stack.settled_tasks(3)] == ["v1"] * 3
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
    assert "docker service update --detach --image reroll-example-app:next --force" in dry.stderr  # nothing else
    assert "image reroll-example-app:latest -> reroll-example-app:next" in dry.stderr
    assert stack.tasks() == before and "summary: dry run; exit 0" in dry.stderr
    assert batched.returncode == 0, batched.stderr
    assert "--update-parallelism 1 " in batched.stderr and "APP_VERSION changed" in batched.stderr, "the file's"


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
        ids = docker("service", "ps", "--quiet", "--no-trunc", "--filter", "desired-state=running",
                     f"{stack.name}_app").stdout.split()
        found = []
        for task in json.loads(docker("inspect", "--type", "task", *ids).stdout):
            if task["Status"]["State"] != "running":
                continue
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

        run = subprocess.run(["docker", "reroll", "--stack", stack.name, "app"], capture_output=True, text=True,
                             cwd=str(tmp_path), env=stack.env, timeout=240)
        print(f"--- docker reroll --stack {stack.name} app -> {run.returncode}\n{run.stderr}")
        took = time.monotonic() - started

        assert run.returncode == 0, run.stderr
        assert stack.inspect()["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == f"{image}@{pushed['reg-v2'][0]}"
        assert running() == [(*pushed["reg-v2"], "reg-v2")] * 2  # by digest, by image id, by what the app says
        assert f"image {image} resolved again on its registry" in run.stderr
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
    dry = subprocess.run(["docker", "reroll", "--stack", stack.name, "--dry-run", "--progress", "json", "app"],
                         capture_output=True, text=True, cwd=str(tmp_path), env=stack.env, timeout=60)
    run = subprocess.run(["docker", "reroll", "--stack", stack.name, "--progress", "json", "app"],
                         capture_output=True, text=True, cwd=str(tmp_path), env=stack.env, timeout=240)
    print(f"--- docker reroll --stack {stack.name} app -> {run.returncode}\n{run.stderr}")

    assert dry.returncode == 0, dry.stderr
    plan = next(json.loads(line) for line in dry.stderr.splitlines() if json.loads(line)["type"] == "plan")
    facts = plan["services"][0]
    assert plan["project"] == stack.name
    assert {"setting": "monitor", "value": "6s", "source": "the service's own"} in facts["settings"]
    assert {"setting": "on failure", "value": "pause", "source": "the service's own"} in facts["settings"]
    assert not [a for a in facts["args"] if a.startswith("--update-")] and facts["deadline"] == 2 * 60 + 6

    assert run.returncode == 0, run.stderr
    assert stack.inspect()["Spec"]["UpdateConfig"] == before, "the service's own settings were changed"
    new = [t for t in json.loads(run.stderr.splitlines()[-1])["services"][0]["new"]]
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
        ambiguous = stack.reroll("app")
        compose_containers = docker("ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={project}")
        compose = stack.reroll("--stack", "", "--dry-run", "app")
        swarm_service = stack.reroll("--stack", stack.name, "--dry-run", "app")

        assert ambiguous.returncode == 3, ambiguous.stderr
        assert f"`--stack {stack.name}` for the Swarm service, `--stack ''` for the compose project" \
            in ambiguous.stderr
        assert compose_containers.stdout.strip() == "" and stack.inspect()["Version"]["Index"] == version
        assert compose.returncode == 0 and f"project {project}" in compose.stderr and "no container runs" \
            in compose.stderr
        assert swarm_service.returncode == 0 and f"Swarm service {stack.name}_app" in swarm_service.stderr
    finally:
        docker("compose", "-p", project, "down", "-t", "0", cwd=str(tmp_path), env=stack.env, check=False)
        stack.remove()


def test_scale_is_applied_and_what_swarm_cannot_do_is_refused_before_any_change(swarm_stack, tmp_path):
    stack = swarm_stack
    labelled = tmp_path / "labelled.yaml"
    labelled.write_text("services:\n  app:\n    image: reroll-example-app:latest\n    labels:\n"
                        "      docker-reroll.wait-after-unhealthy: '2'\n")
    version = stack.inspect()["Version"]["Index"]
    options = stack.reroll("--stack", stack.name, "--drain-time", "2", "--wait", "3", "app")
    label = stack.reroll("--stack", stack.name, "-f", str(labelled), "app")
    dry = stack.reroll("--stack", stack.name, "--dry-run", "--pre-stop-wait-until-unhealthy", "app")
    unchanged = stack.inspect()["Version"]["Index"]
    scaled = stack.reroll("--stack", stack.name, "-f", "stack.yaml", "--scale", "app=4", "app",
                          extra_env={"APP_VERSION": "v2"})

    assert options.returncode == 3 and "--drain-time (command line)" in options.stderr
    assert "--wait (command line)" in options.stderr
    assert label.returncode == 3 and "--wait-after-unhealthy (label docker-reroll.wait-after-unhealthy)" \
        in label.stderr
    assert dry.returncode == 3 and "--pre-stop-wait-until-unhealthy (command line)" in dry.stderr
    assert unchanged == version, "a refusal changed the service"
    assert scaled.returncode == 0, scaled.stderr
    assert "replicas 3 -> 4" in scaled.stderr and [v for _, v in stack.tasks()] == ["v2"] * 4


def test_a_paused_update_is_reported_as_paused_not_as_rolled_back(make_swarm_stack):
    stack = make_swarm_stack(APP_REPLICAS="2", UPDATE_FAILURE_ACTION="pause")
    run = stack.reroll("--stack", stack.name, "-f", "stack.yaml", "--healthcheck-timeout", "30", "--progress",
                       "json", "app", extra_env={"APP_VERSION": "v2", "APP_BROKEN": "1",
                                                 "UPDATE_FAILURE_ACTION": "pause"})

    summary = json.loads(run.stderr.splitlines()[-1])
    assert run.returncode == 1, run.stderr
    assert summary["outcome"] == "paused" and summary["services"][0]["result"] == "failed (paused)"
    assert summary["services"][0]["update_state"] == "paused" and stack.update_state() == "paused"
    assert f"Swarm paused the update of {stack.name}_app" in summary["message"] + run.stderr
    assert "summary: app failed (paused); exit 1" in summary["message"]

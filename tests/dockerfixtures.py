"""Shared helpers for tests against the real engine: images, throw-away compose projects, running the plugin."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional, Sequence, Set

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "src"))

from docker_reroll.haproxy import API_CLIENT, API_PORT, Slot, parse_stat  # noqa: E402
from docker_reroll.model import Container, parse_inspect  # noqa: E402
from loadgen import LoadGenerator  # noqa: E402
from tcpload import LineClients  # noqa: E402

BUSYBOX_IMAGE = "reroll-test-bb:latest"
APP_IMAGE = "reroll-test-app"  # tags v1, v2, v3: busybox with /version

# What a test container that serves nothing runs (`sh -c`, in a compose file, where `$$` is a `$`): it ends on
# SIGTERM, and idles in `wait` on one long sleep, which the trap interrupts at once (a loop of short sleeps would fork
# ten times a second in every test container).
IDLE = "trap 'exit 0' TERM; while true; do sleep 3600 & wait $$!; done"

# A service that serves nothing but behaves like one: stops on SIGTERM, health check fails once /.dead exists
# (the drain recipe) or when BROKEN=1, and exits at once with CRASH=1.
SERVICE_TEMPLATE = """
services:
  web:
    image: {image}:${{TAG:-v1}}
    command: ["sh", "-c", "test \\"$$CRASH\\" = 1 && exit 3; """ + IDLE + """"]
    environment:
      BROKEN: "${{BROKEN:-0}}"
      CRASH: "${{CRASH:-0}}"
      MARK: "${{MARK:-none}}"
    stop_grace_period: 5s
{healthcheck}
"""
HEALTHCHECK = """    healthcheck:
      test: ["CMD", "sh", "-c", "test \\"$$BROKEN\\" != 1 && ! test -e /.dead"]
      interval: 1s
      timeout: 3s
      retries: 1
"""  # timeout 3s: the check is instant, but on a busy host its exec alone can take a second; only BROKEN and
# /.dead should make it fail


def docker(*args: str, check: bool = True, env: Optional[Dict[str, str]] = None,
           input_text: Optional[str] = None, cwd: Optional[str] = None, timeout: float = 300
           ) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, env=env, input=input_text, cwd=cwd,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise DockerFailed(result.returncode, result.args, result.stdout, result.stderr)
    return result


def session_loops(stack: "ComposeProject", service: str = "proxy") -> List[str]:
    """The shell loops of docker-reroll's proxy sessions (one `docker exec` per deploy) still running in the
    service's containers: a deploy ends its own, whatever way it ended."""
    found = []
    for container in stack.containers(service, all_states=False):
        listed = docker("top", container.id, "-eo", "pid,args").stdout
        found += [line for line in listed.splitlines() if "while IFS= read -r line" in line]
    return found


class DockerFailed(subprocess.CalledProcessError):
    """A docker command a test needed failed: its message says what docker said, not only its exit code."""

    def __str__(self) -> str:
        return f"{super().__str__()}: {(self.stderr or '').strip()[-1500:]}"


def require_engine() -> None:
    """No engine is a failure, never a skip: `make test` provisions one, and CI must prove the real thing."""
    result = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"no Docker engine answers (run `make provision`): {result.stderr.strip()[:300]}",
                    pytrace=False)


@contextlib.contextmanager
def machine_lock(name: str):
    """One test worker at a time builds a shared image (parallel workers would build it twice, or tag over each
    other); the others wait, then find it built."""
    import fcntl

    with open(os.path.join(tempfile.gettempdir(), f"docker-reroll-tests-{name}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_test_images() -> None:
    with machine_lock("test-images"):
        _build_test_images()


def _build_test_images() -> None:
    if docker("image", "inspect", f"{APP_IMAGE}:v3", check=False).returncode == 0:
        return
    context = tempfile.mkdtemp(prefix="reroll-bb-")
    try:
        shutil.copy("/bin/busybox", os.path.join(context, "busybox"))
        with open(os.path.join(context, "Dockerfile"), "w") as handle:
            handle.write('FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n')
        docker("build", "-q", "-t", BUSYBOX_IMAGE, context)
        for version in ("v1", "v2", "v3"):
            with open(os.path.join(context, "Dockerfile"), "w") as handle:
                handle.write(f"FROM {BUSYBOX_IMAGE}\nRUN echo {version} > /version\n")
            docker("build", "-q", "-t", f"{APP_IMAGE}:{version}", context)
    finally:
        shutil.rmtree(context, ignore_errors=True)


def install_plugin(docker_config: str) -> str:
    """Build the plugin from this checkout into a private DOCKER_CONFIG, exactly as `make install` does."""
    path = os.path.join(docker_config, "cli-plugins", "docker-reroll")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_plugin.py"), path], check=True,
                   capture_output=True)
    return path


# The states a script can leave the plugin's output in, as shell redirections. The pipe whose reader left is made by
# run_with_streams itself: in a shell pipeline (`| true`) the reader's exit would race the first write.
STREAM_STATES = {
    "stdout closed": ">&-", "stderr closed": "2>&-", "both closed": ">&- 2>&-", "stdout full": ">/dev/full",
    "stderr full": "2>/dev/full", "both full": ">/dev/full 2>&1", "reader gone": "2>&1",
}


def run_with_streams(argv: Sequence[str], state: str, env: Optional[Dict[str, str]] = None,
                     cwd: Optional[str] = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`argv` through a shell with its stdout and stderr in `state`; what reaches the streams left open is captured
    (stdout and stderr are None for a reader that left: it read nothing)."""
    command = f"{shlex.join(argv)} {STREAM_STATES[state]}"
    if state != "reader gone":
        return subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, cwd=cwd,
                              timeout=timeout)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(["sh", "-c", command], stdout=write_end, env=env, cwd=cwd, timeout=timeout)
    finally:
        os.close(write_end)


def slow_docker(directory: str, seconds: float) -> str:
    """A bin directory whose `docker` is the real one, answering `seconds` late: a slow engine. Returns the
    directory, to put first on PATH."""
    os.makedirs(directory, exist_ok=True)
    wrapper = os.path.join(directory, "docker")
    with open(wrapper, "w") as handle:
        handle.write(f"#!/bin/sh\nsleep {seconds}\nexec {shlex.quote(shutil.which('docker') or 'docker')} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    return directory


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


JSON_STREAM = {"DOCKER_REROLL_PROGRESS": "json"}  # a run's progress as the JSON stream


@dataclass(repr=False)
class Stream:
    """A run's JSON stream (`--progress json`), parsed: what happened, in the tool's own fields (the README's "The
    JSON stream"). `run` is the run itself, its stderr the raw stream."""

    run: Run
    events: List[dict]

    @classmethod
    def of(cls, run: Run) -> "Stream":
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        try:
            return cls(run, [json.loads(line) for line in lines])
        except json.JSONDecodeError as error:
            raise AssertionError(f"not a JSON stream ({error}):\n{run.stderr}") from None

    @property
    def returncode(self) -> int:
        return self.run.returncode

    @property
    def seconds(self) -> float:
        """How long the run took, as the test measured it."""
        return self.run.seconds

    def __repr__(self) -> str:
        """Short, for assertion messages: the whole stream is in the test's captured stderr."""
        last = self.events[-1] if self.events else {}
        return f"<exit {self.returncode}, {last.get('outcome', 'no summary')}, errors {self.logs('error')}>"

    def typed(self, kind: str, **fields: object) -> List[dict]:
        """The events of one type whose fields have these values."""
        return [e for e in self.events if e["type"] == kind and all(e.get(k) == v for k, v in fields.items())]

    @property
    def summary(self) -> dict:
        assert self.events and self.events[-1]["type"] == "summary", f"the summary is not last:\n{self}"
        return self.events[-1]

    @property
    def outcome(self) -> str:
        return self.summary["outcome"]

    def result(self, service: str) -> str:
        [found] = [s["result"] for s in self.summary["services"] if s["service"] == service]
        return found

    def phases(self, service: Optional[str] = None) -> List[str]:
        """The phases the service (or the whole run) entered, in order."""
        return [e["phase"] for e in self.typed("phase") if service is None or e["service"] == service]

    def logs(self, level: Optional[str] = None) -> List[str]:
        return [e["message"] for e in self.typed("log") if level is None or e["level"] == level]

    def said(self, words: str, level: Optional[str] = None) -> bool:
        """Some log message (of this level) holds these words."""
        return any(words in message for message in self.logs(level))

    def containers(self, **fields: object) -> List[str]:
        """The ids of the containers some `container` event shows with these fields (role, state, service...)."""
        return list(dict.fromkeys(e["id"] for e in self.typed("container", **fields)))

    def plan(self, service: str) -> dict:
        """The service's plan, as the deploy made it (the first plan event naming it)."""
        return next(s for e in self.typed("plan") for s in e["services"] if s["service"] == service)

    def setting(self, service: str, option: str) -> tuple:
        """(value, where it came from) of one of the service's settings, as its plan shows it."""
        return next((s["value"], s["source"]) for s in self.plan(service)["settings"] if s["setting"] == option)


@dataclass
class ComposeProject:
    """A compose project of its own for one test, removed afterwards whatever happened."""

    directory: str
    name: str
    env: Dict[str, str]
    service: str = "web"
    compose_file: str = "compose.yaml"
    runs: List[Run] = field(default_factory=list)
    recorder: Optional["EventRecorder"] = None  # every container event of the project, from when it was made

    def write(self, text: str, filename: Optional[str] = None) -> str:
        path = os.path.join(self.directory, filename or self.compose_file)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(textwrap.dedent(text))
        return path

    def compose(self, *args: str, extra_env: Optional[Dict[str, str]] = None, check: bool = True
                ) -> subprocess.CompletedProcess:
        return docker("compose", "-p", self.name, *args, env={**self.env, **(extra_env or {})},
                      cwd=self.directory, check=check)

    def reroll(self, *args: str, extra_env: Optional[Dict[str, str]] = None, docker_globals: tuple = (),
               timeout: float = 180, cwd: Optional[str] = None, standalone: bool = False) -> Run:
        """`docker [globals] reroll ARGS` through the real docker CLI, as a user would run it; or, `standalone`,
        the installed plugin file run directly as `docker-reroll ARGS`."""
        if standalone:
            argv = [os.path.join(self.env["DOCKER_CONFIG"], "cli-plugins", "docker-reroll"), *docker_globals, *args]
        else:
            argv = ["docker", *docker_globals, "reroll", *args]
        started = time.monotonic()
        result = subprocess.run(argv, capture_output=True, text=True, env={**self.env, **(extra_env or {})},
                                cwd=cwd or self.directory, timeout=timeout)
        run = Run(result.returncode, result.stdout, result.stderr, time.monotonic() - started)
        self.runs.append(run)
        sys.stderr.write(f"--- docker reroll {' '.join(args)} -> {run.returncode} in {run.seconds:.1f}s\n"
                         f"{run.stderr}\n")
        return run

    def reroll_json(self, *args: str, extra_env: Optional[Dict[str, str]] = None, **how) -> Stream:
        """`reroll`, its progress the JSON stream, parsed."""
        return Stream.of(self.reroll(*args, extra_env={**(extra_env or {}), **JSON_STREAM}, **how))

    def containers(self, service: Optional[str] = None, all_states: bool = True) -> List[Container]:
        ids = docker("ps", *(["-a"] if all_states else []), "-q", "--no-trunc",
                     "--filter", f"label=com.docker.compose.project={self.name}",
                     "--filter", f"label=com.docker.compose.service={service or self.service}").stdout.split()
        return sorted(parse_inspect(docker("inspect", *ids).stdout) if ids else [], key=lambda c: c.number)

    def image_of(self, container: Container) -> str:
        return json.loads(docker("inspect", container.id).stdout)[0]["Config"]["Image"]

    def env_of(self, container: Container) -> Dict[str, str]:
        env = json.loads(docker("inspect", container.id).stdout)[0]["Config"]["Env"]
        return dict(item.split("=", 1) for item in env)

    def up(self, replicas: int = 1, **env: str) -> List[Container]:
        self.compose("up", "-d", "--wait", "--scale", f"{self.service}={replicas}", self.service, extra_env=env)
        return self.containers()

    def record_events(self) -> "ComposeProject":
        self.recorder = EventRecorder(self)
        return self

    def cleanup(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()
        docker("compose", "-p", self.name, "down", "-v", "-t", "0", "--remove-orphans", env=self.env,
               cwd=self.directory, check=False)
        left = lock_and_journal(self)  # every service's lock (containers) and journal (volumes)
        if left:
            docker("rm", "-f", *left, check=False)
            docker("volume", "rm", "-f", *left, check=False)


def new_project(base_env: Dict[str, str], healthcheck: bool = True) -> ComposeProject:
    directory = tempfile.mkdtemp(prefix="reroll-test-")
    name = "rt" + uuid.uuid4().hex[:10]
    project = ComposeProject(directory=directory, name=name, env={**base_env, "COMPOSE_PROJECT_NAME": name})
    project.write(SERVICE_TEMPLATE.format(image=APP_IMAGE, healthcheck=HEALTHCHECK if healthcheck else ""))
    return project


def docker_without_compose(directory: str) -> str:
    """A bin directory whose `docker` is the real one except that it does not know `compose`, as on a host without
    the compose v2 plugin, answering as docker 28 does there (seen with the plugin removed): by the word after
    `compose`, `unknown flag: --project-name`, `unknown shorthand flag: 'f' in -f`, or `unknown command`.
    Returns the directory, to put first on PATH."""
    real_docker = shutil.which("docker")
    os.makedirs(directory, exist_ok=True)
    wrapper = os.path.join(directory, "docker")
    with open(wrapper, "w") as handle:
        handle.write(textwrap.dedent(f"""\
            #!/bin/sh
            seen=
            for arg in "$@"; do
              if [ -n "$seen" ]; then
                case $arg in
                  --*) echo "unknown flag: ${{arg%%=*}}" >&2 ;;
                  -*) echo "unknown shorthand flag: '$(printf %s "$arg" | cut -c2)' in $arg" >&2 ;;
                  *) echo "docker: unknown command: docker compose" >&2 ;;
                esac
                exit 1
              fi
              [ "$arg" = compose ] && seen=1
            done
            [ -n "$seen" ] && {{ echo "docker: unknown command: docker compose" >&2; exit 1; }}
            exec {real_docker} "$@"
            """))
    os.chmod(wrapper, 0o755)
    return directory


def start_reroll(project: ComposeProject, *args: str, extra_env: Optional[Dict[str, str]] = None,
                 ) -> subprocess.Popen:
    """A deploy in the background, through the docker CLI, in its own process group (like a terminal job)."""
    return subprocess.Popen(["docker", "reroll", *args], cwd=project.directory, text=True,
                            env={**project.env, **(extra_env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def read_until(process: subprocess.Popen, marker: str, timeout: float = 60) -> str:
    """Read a background deploy's progress until a line contains `marker`; returns everything read so far."""
    return _read_until(process, lambda line: marker in line, repr(marker), timeout)


def read_until_said(process: subprocess.Popen, words: str, level: Optional[str] = None, timeout: float = 60) -> str:
    """`read_until` for a deploy started with JSON_STREAM: until a `log` event (of this level) holds these words (a
    marker matched against the raw lines would also find the words of the deploy's plan event). Returns everything
    read so far."""

    def said(line: str) -> bool:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return False
        return event.get("type") == "log" and words in event["message"] and level in (None, event["level"])

    return _read_until(process, said, f"a log event with {words!r}", timeout)


def _read_until(process: subprocess.Popen, found: Callable[[str], bool], what: str, timeout: float) -> str:
    seen: List[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if found(line):
            return "".join(seen)
    raise AssertionError(f"never saw {what}; got:\n{''.join(seen)}")


def finish(process: subprocess.Popen, timeout: float = 120) -> str:
    """Wait for a background deploy and return the rest of its progress output (also shown in the test log)."""
    rest = process.stderr.read()
    process.wait(timeout=timeout)
    sys.stderr.write(f"--- background deploy -> {process.returncode}\n{rest}\n")
    return rest


def finish_json(process: subprocess.Popen, seen: str = "", timeout: float = 120) -> Stream:
    """`finish` of a deploy started with JSON_STREAM: all it wrote (`seen`: what read_until got), parsed."""
    sys.stderr.write(seen)
    rest = finish(process, timeout=timeout)
    return Stream.of(Run(process.returncode, "", seen + rest, 0.0))


def child_pid(docker_cli_pid: int) -> int:
    """The plugin process that the docker CLI started."""
    return int(subprocess.run(["pgrep", "-P", str(docker_cli_pid)], capture_output=True, text=True).stdout.split()[0])


# ------------------------------------------------------------------------------------------- the HAProxy example


EXAMPLE = os.path.join(ROOT, "examples", "haproxy")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


STACKS = os.path.join(ROOT, "tests", "stacks")


def new_stack(base_env: Dict[str, str], *overrides: str) -> ComposeProject:
    """examples/haproxy as a project of its own, its proxy published on a free 127.0.0.1 port; `overrides` name
    files in tests/stacks laid over it (through COMPOSE_FILE, which compose and so docker reroll read too)."""
    name = "rs" + uuid.uuid4().hex[:10]
    env = {**base_env, "COMPOSE_PROJECT_NAME": name, "PROXY_PORT": str(free_port())}
    if overrides:
        env["COMPOSE_FILE"] = ":".join(["compose.yaml", *(os.path.join(STACKS, f"{o}.yaml") for o in overrides)])
    return ComposeProject(directory=EXAMPLE, name=name, env=env, service="app")


def new_release_stack(base_env: Dict[str, str]) -> ComposeProject:
    """tests/stacks/release: app, worker and api behind one HAProxy (paths /app/, /worker/, /api/), a database
    marked `docker-reroll.strategy=recreate` and an unchanging service, as a project of its own."""
    name = "rr" + uuid.uuid4().hex[:10]
    env = {**base_env, "COMPOSE_PROJECT_NAME": name, "PROXY_PORT": str(free_port())}
    return ComposeProject(directory=os.path.join(STACKS, "release"), name=name, env=env, service="app")


def new_proxy_stack(base_env: Dict[str, str], example: str, override: str = "") -> ComposeProject:
    """examples/<example> (proxy mode) as a project of its own, its proxy published on a free 127.0.0.1 port;
    `override` (compose YAML) laid over it, and the proxy's configuration made again for the routes the labels
    then give (as `docker reroll --dry-run` prints it), mounted in place of the example's."""
    from docker_reroll.model import parse_compose_config
    from docker_reroll.proxy import plan_routes, routes_of
    from docker_reroll.proxy_drain import DRIVERS

    name = "rp" + uuid.uuid4().hex[:10]
    env = {**base_env, "COMPOSE_PROJECT_NAME": name, "PROXY_PORT": str(free_port())}
    stack = ComposeProject(directory=os.path.join(ROOT, "examples", example), name=name, env=env, service="app")
    if override:
        files = tempfile.mkdtemp(prefix="reroll-proxy-")
        with open(os.path.join(files, "override.yaml"), "w") as handle:
            handle.write(textwrap.dedent(override))
        env["COMPOSE_FILE"] = f"compose.yaml:{files}/override.yaml"
        routes = plan_routes(parse_compose_config(stack.compose("config", "--format", "json").stdout))
        mounts = []
        for proxy in sorted({r.proxy for r in routes.values()}):
            served = routes_of(routes, proxy)
            with open(os.path.join(files, f"{proxy}.cfg"), "w") as handle:
                handle.write(DRIVERS[served[0].kind](None).config(served))  # type: ignore[arg-type]
            mounts.append(f"  {proxy}:\n    volumes:\n      - {files}/{proxy}.cfg:{served[0].config_path}:ro\n")
        with open(os.path.join(files, "config.yaml"), "w") as handle:
            handle.write("services:\n" + "".join(mounts))
        env["COMPOSE_FILE"] += f":{files}/config.yaml"
    return stack


def stack_url(stack: ComposeProject, path: str = "/") -> str:
    return f"http://127.0.0.1:{stack.env['PROXY_PORT']}{path}"


def start_stack(stack: ComposeProject, replicas: int, **env: str) -> List[Container]:
    """The whole stack up, every app container healthy, and the proxy answering."""
    stack.compose("up", "-d", "--wait", "--scale", f"app={replicas}", extra_env=env)
    url = stack_url(stack)
    deadline = time.monotonic() + 30
    while True:
        try:
            import urllib.request

            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the proxy at {url} never answered")
        time.sleep(0.2)
    return stack.containers()


class EventRecorder:
    """The project's container events, subscribed before a deploy and read as they come: a replay with `docker
    events --since` holds only the engine's last 256 events, which health checks under load overrun in seconds."""

    def __init__(self, project: ComposeProject, actions: Sequence[str] = ()) -> None:
        import threading

        self.events: List[tuple] = []
        filters = [word for action in actions for word in ("--filter", f"event={action}")]
        self._process = subprocess.Popen(
            ["docker", "events", "--format", "{{json .}}", "--filter", "type=container",
             "--filter", f"label=com.docker.compose.project={project.name}", *filters],
            stdout=subprocess.PIPE, text=True, env=project.env)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            data = json.loads(line)
            self.events.append((data["timeNano"] / 1e9, data["Actor"]["ID"], data["Action"]))

    def stop(self) -> List[tuple]:
        if self._process.poll() is None:
            time.sleep(1.0)  # the last events of the deploy reach us
            self._process.terminate()
            self._process.wait(timeout=10)
            self._thread.join(timeout=5)
        return sorted(self.events)

    def between(self, since: float, until: float) -> List[tuple]:
        time.sleep(0.3)  # events of the last moment still on their way
        return sorted(event for event in list(self.events) if since <= event[0] <= until)


def project_events(project: ComposeProject, since: float, until: float) -> List[tuple]:
    """(engine time, container id, action) for the project's containers, in order; exec actions keep their
    command (`exec_start: touch /.dead`). From the project's recorder when it has one (the stack fixtures start
    it): a replay would hold only the engine's last 256 events."""
    if project.recorder is not None:
        return project.recorder.between(since, until)
    out = docker("events", "--since", f"{since:.3f}", "--until", f"{until:.3f}", "--format", "{{json .}}",
                 "--filter", "type=container", "--filter", f"label=com.docker.compose.project={project.name}").stdout
    events = []
    for line in out.splitlines():
        data = json.loads(line)
        events.append((data["timeNano"] / 1e9, data["Actor"]["ID"], data["Action"]))
    return events


LOAD_CLIENTS = 8
# The drain recipe: the old container's health check fails, the proxy drops it, then it is stopped.
DRAIN = ["--pre-stop-cmd", "docker exec {id} touch /.dead", "--pre-stop-wait-until-unhealthy"]


# Requests per second in all, unless a test asks otherwise: steady load on every container (each client sends one
# every 80 ms, so a switch's every moment is sampled by some client), without the clients eating the cores the
# engine, the proxy and parallel tests need. Each request costs about 3 ms of CPU here (the app 1, the client 0.7,
# the proxy 0.5, docker-proxy, the engine's log of the proxy's access log): 200 per second took 0.4-0.7 of a core per
# test, and with the parallel phase's loads together the suite ran out of cores (at 400 health checks timed out; at
# 200 a phase ran into its time limit). The serial tests keep their own, higher rate. rate=None: as fast as they go.
LOAD_RATE = 100


# How long a client waits for an answer: longer than the example HAProxy's own give-up time (4 connects of at most
# `timeout connect` 2 s, examples/haproxy/proxy/haproxy.cfg), so that a request is judged by what the proxy answers:
# HAProxy 2.6 sends requests to a server it learned from DNS before its first check, and on a busy machine new
# containers' interfaces took up to 4.9 s to take those connections (HAProxy answered each, 200, and logged it; a
# client that gave up at 5 s counted two as failed). That is latency, in the report's max, not a failure of the
# deploy; a request to a stopped or stopping container still fails: refused, reset or cut, not slow.
CLIENT_TIMEOUT = 10.0


@contextlib.contextmanager
def load_on(stack, settle=1.5, clients=LOAD_CLIENTS, rate=LOAD_RATE, max_duration=240, path="/", warm_up=100,
            host=None):
    """8 clients (`rate` requests per second in all, or as fast as they go) against the proxy (with `host`, that
    Host header) for the duration of the block (and `settle` seconds more, so the requests after the deploy show
    what serves now), once `warm_up` requests were answered. The final report is `load.report()` after the block."""
    load = LoadGenerator(stack_url(stack, path), clients=clients, max_duration=max_duration, rate=rate,
                         host_header=host, timeout=CLIENT_TIMEOUT)
    load.start()
    try:
        assert load.wait_for_requests(warm_up, timeout=20), "the load generator could not reach the proxy"
        yield load
        time.sleep(settle)
    finally:
        report = load.stop()
        print(f"\n[{stack.name}] load: {report.summary()} duration={report.duration:.1f}s")
        if report.failed:
            explain_failures(stack, report)


def utc(moment):
    return time.strftime("%H:%M:%S", time.gmtime(moment)) + f"{moment % 1:.3f}"[1:] + "Z"


def iso_seconds(stamp: str) -> float:
    """An RFC 3339 time (the engine's, or the JSON progress's), in seconds since the epoch."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp() + \
        float(f"0.{fraction or 0}")


def started_at(container_id: str) -> float:
    """When the engine started the container, in seconds since the epoch."""
    return iso_seconds(json.loads(docker("inspect", container_id).stdout)[0]["State"]["StartedAt"])


def haproxy_servers(stack: ComposeProject, backend: str, api_port: int = API_PORT) -> List[Slot]:
    """The servers of a backend of the stack's HAProxy (service `proxy`) as `show stat` reports them, through its
    runtime API on 127.0.0.1:`api_port` in its container, as the driver reaches it; [] while it does not answer."""
    [proxy] = stack.containers("proxy")
    answer = docker("exec", "-i", proxy.id, "sh", "-c", API_CLIENT, "sh", str(api_port), check=False,
                    input_text=f"show stat {backend} 4 -1\n")
    try:
        return parse_stat(answer.stdout)
    except ValueError:
        return []


def start_proxy_stack(stack: ComposeProject, replicas: int = 1, tcp: bool = False, **env: str) -> None:
    """A proxy-mode stack with HAProxy up: `docker compose up -d` (as the example says), then until the proxy answers
    through every container, every time (HAProxy 2.6 puts a server it learns from DNS in service before its first
    check)."""
    stack.compose("up", "-d", "--scale", f"app={replicas}", extra_env=env)
    deadline = time.monotonic() + 60
    while len(proxy_answering(stack, tcp) or ()) < replicas or checked_slots(stack) != replicas:
        assert time.monotonic() < deadline, f"the proxy of {stack.name} does not answer through {replicas} containers"
        time.sleep(0.5)


def checked_slots(stack: ComposeProject, service: str = "app") -> int:
    """How many of the proxy's slots for `service` hold an address and passed a check since: HAProxy 2.6 serves a
    container from DNS before its first check, and that check may still put it down (an app whose /health says 503
    while it starts, a connect that times out on a busy machine). Load begun before then fails for the example, not
    for docker-reroll, which switches only to checked servers."""
    return len([s for s in haproxy_servers(stack, f"reroll_{service}")
                if not s.pinned and s.address and s.checked and not s.down])


def proxy_answering(stack: ComposeProject, tcp: bool = False, tries: int = 12) -> Optional[Set[str]]:
    """The containers that answer through the proxy (host names) over a few requests; None if one failed."""
    hosts: Set[str] = set()
    for _ in range(tries):
        try:
            if tcp:
                with LineClients("127.0.0.1", int(stack.env["PROXY_PORT"]), clients=1, hold=0.0) as probe:
                    time.sleep(0.05)
                if probe.failed():
                    return None
                hosts |= {h for c in probe.connections for h in c.hosts}
            else:
                connection = http.client.HTTPConnection("127.0.0.1", int(stack.env["PROXY_PORT"]), timeout=2)
                connection.request("GET", "/")
                answer = connection.getresponse()
                words = answer.read().decode().split()
                connection.close()
                if answer.status != 200 or len(words) != 2:
                    return None
                hosts.add(words[1])
        except OSError:
            return None
    return hosts


def connection_after_answer(stack: ComposeProject) -> str:
    """What the proxy does with a client's HTTP/1.1 connection after answering a GET / on it: "closed" (its answer
    said `Connection: close` and it closed the connection), "kept" (still open a second later, for the next
    request), or "closed, unannounced"."""
    with socket.create_connection(("127.0.0.1", int(stack.env["PROXY_PORT"])), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = b""
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break  # closed by the proxy
                received += chunk
                if b"\r\n\r\n" in received:
                    conn.settimeout(1.0)  # the answer has begun: a second more for the proxy to close
        except socket.timeout:
            assert b"\r\n\r\n" in received, f"no answer within 5 s: {received[:200]!r}"
            return "kept"
    head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower().splitlines()
    assert head and head[0].split()[1:2] == ["200"], received[:200]
    return "closed" if "connection: close" in head else "closed, unannounced"


def lost_requests(report, limit: int = 20) -> List[str]:
    """A line per failed request (the first `limit`): when it started, how long it took, its client, what it got."""
    return [f"  {utc(s.start)} +{s.latency * 1000:.0f}ms client {s.client}: {s.reason}"
            for s in report.failed_samples[:limit]]


def explain_failures(stack, report):
    """When failed requests started and what they got, and what the proxy logged (errors, server state changes)."""
    print("\n".join(lost_requests(report)))
    proxy = stack.compose("logs", "--no-log-prefix", "--timestamps", "proxy", check=False).stdout.splitlines()
    # what the proxy did with its servers from 3 s before the first failure on
    since = utc(report.failed_samples[0].start - 3) if report.failed_samples else ""
    changes = [line for line in proxy if "[WARNING]" not in line and line[11:23] >= since[:12] and
               any(word in line for word in (" is DOWN", " is UP", "state", "changed its IP", "maintenance"))]
    print("  proxy's servers:\n" + "\n".join("    " + line for line in changes[:60]))
    print("  proxy log:\n" + "\n".join("    " + line for line in proxy[-30:] if "[WARNING]" not in line))


def lock_and_journal(project: ComposeProject) -> List[str]:
    """The project's deploy lock (a container) and journal (a volume), by name, if any are left."""
    prefix = f"docker-reroll-lock.{project.name}"
    containers = docker("ps", "-a", "--format", "{{.Names}}", "--filter", f"name={prefix}").stdout.split()
    volumes = docker("volume", "ls", "--format", "{{.Name}}", "--filter", f"name={prefix}").stdout.split()
    return sorted(containers + volumes)


def journal_replicas(project: ComposeProject) -> Optional[str]:
    """The replica count the project's deploy journal records, None without a journal."""
    found = docker("volume", "inspect", f"docker-reroll-lock.{project.name}.{project.service}.journal", check=False)
    return json.loads(found.stdout)[0]["Labels"].get("io.docker-reroll.replicas") if found.returncode == 0 else None


def versions_after(report, moment: float) -> set:
    """The versions that answered requests started after `moment`."""
    return {s.version for s in report.samples if s.ok and s.start > moment}

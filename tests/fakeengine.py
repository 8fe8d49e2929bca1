"""An in-memory Docker engine for the unit tests: `FakeEngine` gives the `Engine` interface (engine.py) over
containers, volumes and the lock container held in memory, and behaves as the real engine and compose do (what
the engine tests prove of them) as far as the unit tests need:

- compose_up makes containers as compose does (`<project>-<service>-<n>`, n above the highest, compose's labels
  with the current config hash), created or started. Each new container, compose's or a clone, behaves as the next
  of `behaviours` says (default HEALTHY: healthy a moment after its start); health shows only once started.
- start, stop, remove, pause, unpause change states; one call on many objects skips those already gone and raises
  one DockerCommandError with the failures fail() scripted ("rm of p-web-4 fails with ...").
- events() pushes the service's create, start, die, destroy and health_status events (the last only when the health
  changes, as moby's daemon/health.go); with `events_down` a subscription ends at once (a restarting engine).
- inspect parses the JSON inspect_raw gives; plan_clone and create_clone use the real clone mapping.
- run() serves lock.py: `create` of the lock container (a conflict when the name is taken), `volume create` and
  `volume inspect` of the journal, `info` with the engine's clock (ours plus `clock_skew`).
- `runner` records the user's commands; `docker exec ID touch /.dead` fails that container's health check, as
  the test apps' do.

`FakeRunner` stands in for processes.CommandRunner where a test checks the engine layer itself (Docker,
SwarmEngine) against the docker CLI's recorded answers.
"""

import hashlib
import itertools
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional

from docker_reroll.clone import clone
from docker_reroll.errors import DockerCommandError
from docker_reroll.model import (
    LABEL_CONFIG_HASH,
    LABEL_NUMBER,
    LABEL_ONEOFF,
    LABEL_PROJECT,
    LABEL_SERVICE,
    ContainerEvent,
    ProjectConfig,
    parse_inspect,
)
from docker_reroll.processes import CommandRunner, Result

# What a new container does once started:
HEALTHY, NEVER_HEALTHY, EXITS, NO_HEALTHCHECK = "healthy", "never healthy", "exits (code 1)", "no health check"
HEALTH_CHECK = {"Test": ["CMD-SHELL", "test ! -e /.dead && wget -qO- localhost:8080/health"], "Interval": 10 ** 9}
PROBE_OUTPUT = {"healthy": "ok", "starting": "", "unhealthy": "wget: can't connect to remote host: Connection refused"}


class FakeRunner(CommandRunner):
    """CommandRunner without processes: records every command; answers with `answer(argv)` if given, else with the
    next of `results`, else exit 0 and no output."""

    def __init__(self, *results: Result, answer: Optional[Callable[[List[str]], Result]] = None) -> None:
        super().__init__()
        self.results, self.answer = list(results), answer
        self.calls: List[List[str]] = []

    def run(self, argv, **kwargs) -> Result:
        self.calls.append(list(argv))
        if self.answer is not None:
            return self.answer(list(argv))
        return self.results.pop(0) if self.results else Result(0, "", "")


@dataclass
class Box:
    """One container as the engine holds it."""

    id: str
    name: str
    labels: Dict[str, str]
    image: str
    behaviour: str
    created: str
    status: str = "created"
    health: Optional[str] = None
    exit_code: int = 0


class Subscription:
    """One `docker events` for a service's containers; ended, it says so with None, as engine.EventStream does."""

    def __init__(self, project: str, service: str, on_event: Callable[[Optional[ContainerEvent]], None]) -> None:
        self.project, self.service, self.on_event, self.live = project, service, on_event, True

    def close(self) -> None:
        if self.live:
            self.live = False
            self.on_event(None)


class FakeEngine:
    def __init__(self, project: str = "p", config_hash: str = "new", image: str = "app:v2") -> None:
        self.project = project
        self.config_hash, self.image = config_hash, image  # what compose makes new containers of: the current config
        self.compose_project = ProjectConfig(project, {})  # what load_project answers
        self.delay = 0.02  # from a container's start to what its behaviour does
        self.behaviours: List[str] = []  # of the next containers made, in order
        self.failures: Dict["tuple[str, str]", str] = {}  # (verb, name or id) -> the engine's error
        self.containers: Dict[str, Box] = {}  # by id, in creation order
        self.volumes: Dict[str, Dict[str, str]] = {}  # name -> labels
        self.subscriptions: List[Subscription] = []
        self.events_down = False
        self.clock_skew = 0.0
        self.calls: List[str] = []  # the verbs asked of the engine, in order
        self.environ: Dict[str, str] = {}
        self.answered_since = 0.0  # a test sets it to say an engine outage ended then
        self.runner = FakeRunner(answer=self._user_command)
        self.execs: List[tuple] = []  # (container, argv, input) of each `docker exec`, or question to a session
        self.sessions: List[tuple] = []  # (container, argv) of each session opened
        self.sessions_fail = False  # every session's question goes unanswered (the session ended)
        self.exec_answer: Optional[Callable[[str, List[str]], Result]] = None
        self.copies: List[tuple] = []  # (container, directory, files) of each `docker cp` into one
        self.kills: List[tuple] = []  # (container, signal)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)

    # -- what a test does to the engine

    def add(self, service: str, health: Optional[str] = "healthy", config_hash: str = "old") -> str:
        """A running container of the service made before the test (by an earlier deploy), of image app:v1."""
        box = self._compose_create(service, config_hash, "app:v1", NO_HEALTHCHECK if health is None else HEALTHY)
        with self._lock:
            box.status, box.health = "running", health
            self._emit(box, "start")
        return box.id

    def fail(self, verb: str, target: str, error: str) -> None:
        """`docker VERB` ("rm", "stop", "start", "inspect", "up", "volume inspect", ...) on `target` (a
        container's name or id, a volume, the service for "up") fails from now on with the engine's `error`."""
        self.failures[(verb, target)] = f"Error response from daemon: {error}"

    def set_health(self, target: str, health: str) -> None:
        with self._lock:
            box = self._find(target)
            if box is not None and box.status == "running" and box.health != health:
                box.health = health
                self._emit(box, "health_status", health=health)

    def die(self, target: str, code: int) -> None:
        with self._lock:
            box = self._find(target)
            if box is not None and box.status in ("running", "paused"):
                box.status, box.exit_code = "exited", code
                self._emit(box, "die", exit_code=code)

    def service(self, service: str) -> List[Box]:
        with self._lock:
            return [b for b in self.containers.values() if b.labels.get(LABEL_SERVICE) == service]

    # -- Engine

    def docker(self, *args: str) -> List[str]:
        return ["docker", *args]

    def run(self, *args: str, **kwargs: object) -> Result:
        words = list(args)
        self.calls.append(" ".join(words[:2]) if words[0] == "volume" else words[0])
        if words[0] == "create":
            result = self._create_named(words)
        elif words[:2] == ["volume", "create"]:
            self.volumes.setdefault(words[-1], dict(w.split("=", 1) for w in _values(words, "--label")))
            result = Result(0, words[-1] + "\n", "")
        elif words[:2] == ["volume", "inspect"]:
            labels, error = self.volumes.get(words[-1]), self._failure("volume inspect", words[-1])
            result = Result(1, "", error or f"Error response from daemon: get {words[-1]}: no such volume") \
                if error or labels is None else Result(0, json.dumps(labels) + "\n", "")
        elif words[0] == "info":
            result = Result(0, json.dumps(_stamp(self.clock_skew)) + "\n", "")
        else:
            raise AssertionError(f"the fake engine does not serve `docker {' '.join(words)}`")
        if kwargs.get("check", True) and result.returncode != 0:
            raise DockerCommandError(self.docker(*args), result.returncode, result.stderr)
        return result

    def environment_for_user_commands(self) -> Dict[str, str]:
        return dict(self.environ)

    def project_containers(self, project: str):
        found = self.inspect([b.id for b in list(self.containers.values()) if b.labels.get(LABEL_PROJECT) == project])
        return [c for c in found if not c.oneoff and c.service]

    def service_container_ids(self, project: str, service: str) -> List[str]:
        self.calls.append("ps")
        return [b.id for b in self.service(service) if b.labels.get(LABEL_PROJECT) == project]

    def inspect(self, ids):
        ids = list(ids)
        self.calls.append("inspect")
        error = next(filter(None, (self._failure("inspect", i) for i in ids)), None)
        if error:
            raise DockerCommandError(self.docker("container", "inspect", *ids), 1, error)
        with self._lock:
            return parse_inspect(json.dumps([self._raw(box) for box in filter(None, map(self._find, ids))]))

    def inspect_raw(self, ids):
        with self._lock:
            boxes = [self._find(i) for i in ids]
            if None in boxes:
                raise DockerCommandError(self.docker("container", "inspect", *ids), 1, "Error: No such container")
            return [self._raw(box) for box in boxes]

    def stop(self, ids, grace_seconds: float) -> None:
        self._each("stop", ids, lambda box: self.die(box.id, 0))

    def remove(self, ids) -> None:
        def remove(box: Box) -> None:
            self.die(box.id, 137)  # --force kills a running one first
            with self._lock:
                del self.containers[box.id]
                self._emit(box, "destroy")

        self._each("rm", ids, remove)

    def remove_volumes(self, names) -> None:
        self.calls.append("volume rm")
        failures = [error for error in (self._failure("volume rm", n) for n in names) if error]
        if failures:
            raise DockerCommandError(self.docker("volume", "rm", "--force", *names), 1, "\n".join(failures))
        for name in names:
            self.volumes.pop(name, None)

    def start(self, container_id: str) -> None:
        self._each("start", [container_id], self._start)

    def pause(self, ids) -> None:
        self._each("pause", ids, lambda box: setattr(box, "status", "paused"))

    def unpause(self, ids) -> None:
        self._each("unpause", ids, lambda box: setattr(box, "status", "running"))

    def plan_clone(self, item, number: int):
        return clone(item, number, None, True)

    def create_clone(self, item, number: int) -> str:
        self.calls.append("create clone")
        labels = {**item["Config"]["Labels"], LABEL_NUMBER: str(number)}
        return self._create(self.plan_clone(item, number).name, labels, item["Config"]["Image"],
                            self._next_behaviour()).id

    def image_ids(self, names):
        return {name: "sha256:" + hashlib.sha256(name.encode()).hexdigest() for name in names}

    def image_has_healthcheck(self, image: str) -> Optional[bool]:
        return True

    def logs_tail(self, container_id: str, lines: int = 20) -> str:
        box = self._find(container_id)
        return f"{box.name} listening on :8080" if box else f"Error: No such container: {container_id}"

    def exec_in(self, container_id: str, argv, input_bytes: bytes = b"", timeout: float = 120.0) -> Result:
        """A command inside a container (a proxy driver's): recorded, answered by `exec_answer` if given."""
        self.execs.append((container_id, list(argv), input_bytes))
        return self.exec_answer(container_id, list(argv)) if self.exec_answer else Result(0, "", "")

    def exec_session(self, container_id: str, argv, end: str) -> "FakeSession":
        """A session's answers are those of one `docker exec` each, recorded as such (with the session's argv)."""
        self.sessions.append((container_id, list(argv)))
        return FakeSession(self, container_id, list(argv))

    def copy_into(self, container_id: str, directory: str, files) -> None:
        self.copies.append((container_id, directory, dict(files)))

    def kill(self, container_id: str, signal_name: str) -> None:
        self.kills.append((container_id, signal_name))

    def events(self, project: str, service: str, on_event) -> Subscription:
        subscription = Subscription(project, service, on_event)
        self.subscriptions.append(subscription)
        if self.events_down:
            subscription.close()
        return subscription

    def load_project(self) -> ProjectConfig:
        return self.compose_project

    def services_in_any_profile(self) -> List[str]:
        return []

    def config_hashes(self) -> Dict[str, str]:
        return {service: self.config_hash for service in self.compose_project.services}

    def compose_up(self, service: str, *, scale: Optional[int], no_deps: bool, cancel: Callable[[], bool],
                   start: bool = True, recreate: bool = False, on_line: Optional[Callable[[str], None]] = None) -> None:
        """`up --no-recreate`: the service's containers stay (in any state), new ones are made up to `scale`."""
        assert not recreate, "the fake engine does not recreate containers"
        self.calls.append("up")
        error = self._failure("up", service)
        if error:
            raise DockerCommandError(self.docker("compose", "up", service), 1, error)
        existing = len(self.service(service))
        for _ in range(max(scale or 1, existing) - existing):
            box = self._compose_create(service, self.config_hash, self.image, self._next_behaviour())
            if on_line is not None:
                on_line(f" Container {box.name}  Created")
            if start:
                self._start(box)

    # -- inside the engine

    def _create(self, name: str, labels: Dict[str, str], image: str, behaviour: str) -> Box:
        with self._lock:
            box = Box(hashlib.sha256(f"{name}#{next(self._ids)}".encode()).hexdigest(), name, labels, image,
                      behaviour, _stamp(self.clock_skew))
            self.containers[box.id] = box
            self._emit(box, "create")
            return box

    def _compose_create(self, service: str, config_hash: str, image: str, behaviour: str) -> Box:
        with self._lock:
            number = max((int(b.labels[LABEL_NUMBER]) for b in self.service(service)), default=0) + 1
            labels = {LABEL_PROJECT: self.project, LABEL_SERVICE: service, LABEL_NUMBER: str(number),
                      LABEL_CONFIG_HASH: config_hash, LABEL_ONEOFF: "False"}
            return self._create(f"{self.project}-{service}-{number}", labels, image, behaviour)

    def _create_named(self, words: List[str]) -> Result:
        """`docker create --name NAME --label K=V ... IMAGE CMD`: of two creators of a name, exactly one wins."""
        name = words[words.index("--name") + 1]
        with self._lock:
            holder = self._find(name)
            if holder is not None:
                return Result(125, "", f'Error response from daemon: Conflict. The container name "/{name}" is '
                                       f'already in use by container "{holder.id}".')
            labels = dict(label.split("=", 1) for label in _values(words, "--label"))
            return Result(0, self._create(name, labels, words[-2], NO_HEALTHCHECK).id + "\n", "")

    def _start(self, box: Box) -> None:
        with self._lock:
            box.status, box.exit_code = "running", 0
            box.health = None if box.behaviour == NO_HEALTHCHECK else "starting"
            self._emit(box, "start")
        then = {HEALTHY: lambda: self.set_health(box.id, "healthy"), EXITS: lambda: self.die(box.id, 1)}.get(
            box.behaviour)
        if then is not None:
            self._later(then)

    def _user_command(self, argv: List[str]) -> Result:
        if argv[1:2] == ["exec"] and argv[3:] == ["touch", "/.dead"]:
            self._later(lambda: self.set_health(argv[2], "unhealthy"))
        return Result(0, "", "")

    def _later(self, action: Callable[[], None]) -> None:
        timer = threading.Timer(self.delay, action)
        timer.daemon = True
        timer.start()

    def _each(self, verb: str, ids, act: Callable[[Box], None]) -> None:
        """One call on many containers, as engine.Docker makes it: one already gone is no failure."""
        self.calls.append(verb)
        failures = []
        for box in filter(None, map(self._find, ids)):
            error = self._failure(verb, box.id, box.name)
            failures += [error] if error else []
            if not error:
                act(box)
        if failures:
            raise DockerCommandError(self.docker(verb, *ids), 1, "\n".join(failures))

    def _emit(self, box: Box, action: str, health: Optional[str] = None, exit_code: Optional[int] = None) -> None:
        event = ContainerEvent(box.id, action, health, exit_code, time.time() + self.clock_skew, time.monotonic())
        for subscription in list(self.subscriptions):
            if subscription.live and (subscription.project, subscription.service) == \
                    (box.labels.get(LABEL_PROJECT), box.labels.get(LABEL_SERVICE)):
                subscription.on_event(event)

    def _find(self, target: str) -> Optional[Box]:
        with self._lock:
            return self.containers.get(target) or next((b for b in self.containers.values() if b.name == target),
                                                       None)

    def _failure(self, verb: str, *targets: str) -> Optional[str]:
        return next((self.failures[(verb, t)] for t in targets if (verb, t) in self.failures), None)

    def _raw(self, box: Box) -> Dict[str, object]:
        state: Dict[str, object] = {"Status": box.status, "Running": box.status == "running",
                                    "ExitCode": box.exit_code}
        if box.health is not None:
            state["Health"] = {"Status": box.health, "Log": [{"Output": PROBE_OUTPUT[box.health]}]}
        config: Dict[str, object] = {"Labels": dict(box.labels), "Image": box.image}
        if box.behaviour != NO_HEALTHCHECK:
            config["Healthcheck"] = HEALTH_CHECK
        return {"Id": box.id, "Name": "/" + box.name, "Created": box.created, "State": state, "Config": config,
                "Image": "sha256:" + hashlib.sha256(box.image.encode()).hexdigest(),
                "HostConfig": {"NetworkMode": "none"}}

    def _next_behaviour(self) -> str:
        return self.behaviours.pop(0) if self.behaviours else HEALTHY


def _values(words: List[str], flag: str) -> List[str]:
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == flag]


def _stamp(skew: float) -> str:
    """The engine's time now, as it writes it (RFC 3339, UTC)."""
    return datetime.fromtimestamp(time.time() + skew, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeSession:
    """processes.Session on the fake engine: each line asked is an exec of its own (None once `sessions_fail`)."""

    def __init__(self, engine: FakeEngine, container_id: str, argv: List[str]) -> None:
        self.engine, self.container_id, self.argv = engine, container_id, argv
        self.closed = False

    def ask(self, line: str, timeout: float) -> Optional[Result]:
        if self.closed or self.engine.sessions_fail:
            self.closed = True
            return None
        return self.engine.exec_in(self.container_id, self.argv, (line + "\n").encode(), timeout)

    def close(self) -> None:
        self.closed = True

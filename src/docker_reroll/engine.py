"""The thin layer that talks to Docker: the user's own `docker` CLI and compose, with the user's global flags.

Docker is reached only through here (processes.py runs the commands within their bounds). Engine JSON is parsed
here into small dataclasses, by pure functions that the unit tests feed with saved engine output.
"""

import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from docker_reroll.errors import DockerCommandError, RefusedError
from docker_reroll.processes import CommandRunner, Result

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_ONEOFF = "com.docker.compose.oneoff"
LABEL_NUMBER = "com.docker.compose.container-number"

DOCKER_CALL_TIMEOUT = 120.0  # a plain docker call (inspect, ps, rm...) that takes longer is stuck: give up on it
STOP_TIMEOUT_MARGIN = 60.0  # `docker stop` may take each container's own grace period; this much on top of it


# ----------------------------------------------------------------------------------------------- parsed engine data


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    status: str  # created, running, paused, restarting, removing, exited, dead
    health: Optional[str]  # None without a health check, else starting, healthy or unhealthy
    exit_code: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    image_id: str = ""
    health_output: str = ""  # the last health probe's output: the first thing to read when a deploy fails
    stop_timeout: Optional[int] = None  # seconds, from stop_grace_period; None: the engine's default (10)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def has_healthcheck(self) -> bool:
        return self.health is not None

    @property
    def number(self) -> int:
        try:
            return int(self.labels.get(LABEL_NUMBER, "0"))
        except ValueError:
            return 0

    @property
    def oneoff(self) -> bool:
        return self.labels.get(LABEL_ONEOFF, "False") == "True"


def parse_inspect(text: str) -> List[Container]:
    """`docker inspect` JSON (a list of container objects) into Containers."""
    containers = []
    for item in json.loads(text or "[]"):
        state = item.get("State") or {}
        health = state.get("Health") or None
        log = (health or {}).get("Log") or []
        config = item.get("Config") or {}
        containers.append(
            Container(
                id=item["Id"],
                name=(item.get("Name") or "").lstrip("/"),
                status=state.get("Status", "unknown"),
                health=health.get("Status") if health else None,
                exit_code=int(state.get("ExitCode") or 0),
                labels=config.get("Labels") or {},
                image_id=item.get("Image", ""),
                health_output=(log[-1].get("Output") or "").strip() if log else "",
                stop_timeout=config.get("StopTimeout"),
            )
        )
    return containers


@dataclass(frozen=True)
class ContainerEvent:
    id: str
    action: str  # create, start, die, destroy, health_status
    health: Optional[str] = None  # for health_status: healthy, unhealthy or starting
    exit_code: Optional[int] = None  # for die
    engine_time: float = 0.0  # seconds since the epoch, by the engine's clock
    received: float = 0.0  # time.monotonic() when the line arrived


def parse_event(line: str, received: float = 0.0) -> Optional[ContainerEvent]:
    """One line of `docker events --format '{{json .}}'`; None for lines that are not container events."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if data.get("Type") != "container":
        return None
    action = data.get("Action") or data.get("status") or ""
    attributes = (data.get("Actor") or {}).get("Attributes") or {}
    container_id = (data.get("Actor") or {}).get("ID") or data.get("id") or ""
    health = None
    if action.startswith("health_status"):
        action, _, health = action.partition(":")
        health = health.strip() or None
    exit_code = attributes.get("exitCode")
    return ContainerEvent(
        id=container_id,
        action=action,
        health=health,
        exit_code=int(exit_code) if exit_code and exit_code.lstrip("-").isdigit() else None,
        engine_time=(data.get("timeNano") or 0) / 1e9 or float(data.get("time") or 0),
        received=received,
    )


@dataclass(frozen=True)
class ServiceSpec:
    """What the compose file says about the service, as far as a rolling deploy cares."""

    name: str
    container_name: Optional[str] = None
    network_mode: Optional[str] = None
    fixed_host_ports: List[str] = field(default_factory=list)
    has_post_start_hooks: bool = False  # compose runs them when it starts a container itself


@dataclass(frozen=True)
class ProjectConfig:
    name: str
    services: List[str]
    service: Optional[ServiceSpec]  # None when the service is not defined (or disabled by profiles)


PORT_RANGE = re.compile(r"^\d+-\d+$")


def parse_compose_config(text: str, service: str) -> ProjectConfig:
    """`docker compose config --format json` into the project's name and the service's deploy-relevant facts."""
    data = json.loads(text)
    services = data.get("services") or {}
    spec = None
    if service in services:
        definition = services[service] or {}
        fixed = []
        for port in definition.get("ports") or []:
            published = str(port.get("published") or "") if isinstance(port, dict) else ""
            if published and not PORT_RANGE.match(published):
                fixed.append(f"{published}:{port.get('target')}")
        spec = ServiceSpec(
            name=service,
            container_name=definition.get("container_name"),
            network_mode=definition.get("network_mode"),
            fixed_host_ports=fixed,
            has_post_start_hooks=bool(definition.get("post_start")),
        )
    return ProjectConfig(name=data.get("name") or "", services=sorted(services), service=spec)


def legacy_project_name(project_name: Optional[str], files: Sequence[str], project_directory: Optional[str],
                        environ: Mapping[str, str]) -> str:
    """The project name as docker-compose v1 derives it (v1 cannot print it): -p, COMPOSE_PROJECT_NAME, .env, dir."""
    directory = project_directory or (os.path.dirname(os.path.abspath(files[0])) if files else os.getcwd())
    name = project_name or environ.get("COMPOSE_PROJECT_NAME")
    if not name:
        try:
            with open(os.path.join(directory, ".env"), encoding="utf-8") as env_file:
                for line in env_file:
                    key, _, value = line.strip().partition("=")
                    if key.strip() == "COMPOSE_PROJECT_NAME":
                        name = value.strip().strip("'\"")
        except OSError:
            pass
    name = name or os.path.basename(os.path.abspath(directory))
    return re.sub(r"[^-_a-z0-9]", "", name.lower())


# ----------------------------------------------------------------------------------------------------- event stream


class EventStream:
    """`docker events` for the service's containers, parsed on a reader thread and handed to a callback.

    The callback gets each ContainerEvent, and None once when the stream ends (the engine went away, the CLI died):
    waiters then fall back to polling.
    """

    def __init__(self, argv: Sequence[str], on_event: Callable[[Optional[ContainerEvent]], None],
                 env: Optional[Mapping[str, str]] = None) -> None:
        self._on_event = on_event
        self._process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True, env=dict(env) if env is not None else None,
            preexec_fn=_die_with_parent_hook(),
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            event = parse_event(raw.decode(errors="replace"), received=time.monotonic())
            if event is not None:
                self._on_event(event)
        self._on_event(None)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._process.kill()


def _die_with_parent_hook() -> Optional[Callable[[], None]]:
    """For the `docker events` child: end with us even if we are killed outright, so no reader is left behind.
    prctl is looked up here, in the parent: the child, forked from a process with threads, must only call it."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None).prctl
    except (ImportError, OSError, AttributeError):  # not Linux: the closed pipe ends the child at its next event
        return None
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# ------------------------------------------------------------------------------------------------ docker and compose


@dataclass(frozen=True)
class Compose:
    """How to call compose: v2 as `docker [globals] compose`, or the legacy standalone `docker-compose` v1."""

    argv: List[str]  # everything before the compose subcommand, project flags included
    legacy: bool = False
    env: Optional[Dict[str, str]] = None

    def command(self, *args: str) -> List[str]:
        return self.argv + list(args)


LEGACY_GLOBALS = {"--context", "--host", "--tlscacert", "--tlscert", "--tlskey", "--log-level"}
LEGACY_BOOL_GLOBALS = {"--tls": "--tls", "--tlsverify": "--tlsverify", "--debug": "--verbose"}


def legacy_compose(project_args: Sequence[str], docker_globals: Sequence[str],
                   environ: Mapping[str, str]) -> Compose:
    """docker-compose v1 takes most of docker's global flags itself; --config becomes DOCKER_CONFIG."""
    argv = ["docker-compose"]
    env = dict(environ)
    for flag, value in global_flags(docker_globals):
        if value is None:
            argv.append(LEGACY_BOOL_GLOBALS[flag])
        elif flag == "--config":
            env["DOCKER_CONFIG"] = value
        elif flag in LEGACY_GLOBALS:
            argv += [flag, value]
    return Compose(argv + list(project_args), legacy=True, env=env)


BOOL_GLOBALS = ("--debug", "--tls", "--tlsverify")  # docker's global flags without a value (cli.split_argv)
USER_COMMAND_VARIABLES = {"--context": "DOCKER_CONTEXT", "--host": "DOCKER_HOST", "--config": "DOCKER_CONFIG"}


def global_flags(docker_globals: Sequence[str]) -> List["tuple[str, Optional[str]]"]:
    """docker's global flags as the CLI split them (long names; a value after each flag that takes one) in pairs."""
    pairs: List["tuple[str, Optional[str]]"] = []
    i = 0
    while i < len(docker_globals):
        flag = docker_globals[i]
        if flag in BOOL_GLOBALS:
            pairs.append((flag, None))
            i += 1
        else:
            pairs.append((flag, docker_globals[i + 1] if i + 1 < len(docker_globals) else ""))
            i += 2
    return pairs


NOT_A_DOCKER_COMMAND = ("is not a docker command", "unknown command")
NO_COMPOSE_FILE = ("no configuration file provided", "Can't find a suitable configuration file")  # v2, v1
COMPOSE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


class Docker:
    """Docker and compose calls for one project, with the user's global flags on every call."""

    def __init__(self, docker_binary: str, docker_globals: Sequence[str], project_args: Sequence[str],
                 environ: Mapping[str, str], runner: Optional[CommandRunner] = None) -> None:
        self.docker_argv = [docker_binary] + list(docker_globals)
        self.docker_globals = list(docker_globals)
        self.project_args = list(project_args)
        self.environ = dict(environ)
        self.runner = runner or CommandRunner()
        self.compose: Optional[Compose] = None

    # -- plain docker

    def docker(self, *args: str) -> List[str]:
        return self.docker_argv + list(args)

    def run(self, *args: str, **kwargs: object) -> Result:
        kwargs.setdefault("timeout", DOCKER_CALL_TIMEOUT)
        return self.runner.run(self.docker(*args), **kwargs)  # type: ignore[arg-type]

    def environment_for_user_commands(self) -> Dict[str, str]:
        """The environment for --pre-stop-cmd: docker's global flags as the variables docker reads, so that
        `docker exec {id} ...` in the command reaches the same engine as we do."""
        env = dict(self.environ)
        for flag, value in global_flags(self.docker_globals):
            if flag in USER_COMMAND_VARIABLES and value is not None:
                env[USER_COMMAND_VARIABLES[flag]] = value
            elif flag == "--tlsverify":
                env["DOCKER_TLS_VERIFY"] = "1"
            elif flag in ("--tlscacert", "--tlscert", "--tlskey") and value:
                env["DOCKER_CERT_PATH"] = os.path.dirname(os.path.abspath(value))
        return env

    def list_service_containers(self, project: str, service: str) -> List[Container]:
        """All containers compose made for the service (any state, one-off `run` containers excluded)."""
        listed = self.run("ps", "--all", "--quiet", "--no-trunc",
                          "--filter", f"label={LABEL_PROJECT}={project}",
                          "--filter", f"label={LABEL_SERVICE}={service}").stdout.split()
        return [c for c in self.inspect(listed) if not c.oneoff]

    def inspect(self, ids: Iterable[str]) -> List[Container]:
        """One `docker inspect` for many containers; ones that vanished meanwhile are simply absent."""
        ids = list(ids)
        if not ids:
            return []
        result = self.run("container", "inspect", *ids, check=False)
        if result.returncode != 0 and not result.stdout.strip().startswith("["):
            if "No such" in result.stderr:
                return []
            raise DockerCommandError(self.docker("container", "inspect", *ids), result.returncode, result.stderr)
        return parse_inspect(result.stdout)

    def stop(self, ids: Sequence[str], grace_seconds: float) -> Result:
        """Stop with each container's own stop signal and grace period (from the compose file); `grace_seconds` is
        the longest of those, to bound how long this may take."""
        return self.run("stop", *ids, check=False, timeout=grace_seconds + STOP_TIMEOUT_MARGIN)

    def remove(self, ids: Sequence[str]) -> Result:
        # Anonymous volumes are kept, as compose keeps them: they may hold data.
        return self.run("rm", "--force", *ids, check=False) if ids else Result(0, "", "")

    def start(self, container_id: str) -> Result:
        return self.run("start", container_id, check=False)

    def logs_tail(self, container_id: str, lines: int = 20) -> str:
        result = self.run("logs", "--tail", str(lines), "--timestamps", container_id, check=False)
        return (result.stdout + result.stderr).strip()

    def events(self, project: str, service: str,
               on_event: Callable[[Optional[ContainerEvent]], None]) -> EventStream:
        # --since a moment ago: events between starting the CLI and the engine registering us are replayed.
        since = f"{time.time() - 1.0:.3f}"
        argv = self.docker(
            "events", "--format", "{{json .}}", "--since", since,
            "--filter", "type=container",
            "--filter", f"label={LABEL_PROJECT}={project}",
            "--filter", f"label={LABEL_SERVICE}={service}",
            "--filter", "event=create", "--filter", "event=start", "--filter", "event=die",
            "--filter", "event=destroy", "--filter", "event=health_status",
        )
        return EventStream(argv, on_event)

    # -- compose

    def load_project(self, service: str) -> ProjectConfig:
        """Ask compose for the project (so its rules for names, files and profiles apply); pick v2 or v1."""
        v2 = Compose(self.docker("compose", *self.project_args))
        result = self.runner.run(v2.command("config", "--format", "json"), check=False, timeout=DOCKER_CALL_TIMEOUT)
        if result.returncode == 0:
            self.compose = v2
            project = parse_compose_config(result.stdout, service)
            if not project.name:
                raise RefusedError("compose did not report the project's name: a newer compose v2 is needed")
            return project
        if not any(marker in result.stderr for marker in NOT_A_DOCKER_COMMAND):
            raise self._cannot_load(result.stderr)
        return self._load_legacy_project(service)

    def _cannot_load(self, stderr: str) -> RefusedError:
        if any(marker in stderr for marker in NO_COMPOSE_FILE):
            directory = _flag_value(self.project_args, "--project-directory") or os.getcwd()
            return RefusedError(
                f"no compose file in {directory} or its parent directories (compose looks for "
                f"{', '.join(COMPOSE_FILE_NAMES)}): run this in the project's directory, or name the file with -f"
            )
        return RefusedError(f"compose cannot load the project: {compose_message(stderr)}")

    def _load_legacy_project(self, service: str) -> ProjectConfig:
        legacy = legacy_compose(self.project_args, self.docker_globals, self.environ)
        try:
            result = self.runner.run(legacy.command("config", "--services"), check=False, env=legacy.env,
                                     timeout=DOCKER_CALL_TIMEOUT)
        except DockerCommandError:
            raise RefusedError(
                "neither `docker compose` (v2) nor `docker-compose` (v1) is installed: install the compose plugin"
            ) from None
        if result.returncode != 0:
            raise self._cannot_load(result.stderr)
        self.compose = legacy
        services = sorted(result.stdout.split())
        name = legacy_project_name(_flag_value(self.project_args, "--project-name"),
                                   _flag_values(self.project_args, "--file"),
                                   _flag_value(self.project_args, "--project-directory"), self.environ)
        spec = ServiceSpec(name=service) if service in services else None
        return ProjectConfig(name=name, services=services, service=spec)

    def services_in_any_profile(self) -> List[str]:
        assert self.compose is not None
        if self.compose.legacy:
            return []
        result = self.runner.run(self.compose.command("--profile", "*", "config", "--services"), check=False,
                                 timeout=DOCKER_CALL_TIMEOUT)
        return result.stdout.split() if result.returncode == 0 else []

    def compose_up(self, service: str, *, scale: Optional[int], no_deps: bool,
                   cancel: Callable[[], bool], start: bool = True) -> None:
        """`up -d` for one service, at `scale` containers if given, leaving its dependencies alone if `no_deps`,
        and only creating the new containers if not `start`. `cancel` stops compose (with SIGINT, as Ctrl-C would:
        it then stops cleanly); it has no time limit, since it may be building an image.

        Existing containers are never recreated (--no-recreate): new ones get the current config and image."""
        assert self.compose is not None
        # compose v1 refuses --no-start with --detach; without starting anything, up returns at once anyway.
        args = ["up", "--no-recreate"] + (["--detach"] if start else ["--no-start"])
        args += ["--no-deps"] if no_deps else []
        if scale is not None:
            args += ["--scale", f"{service}={scale}"]
        result = self.runner.run(self.compose.command(*args, service), capture=False, cancel=cancel,
                                 stop_signal=signal.SIGINT, check=False, env=self.compose.env)
        if result.returncode != 0:
            raise DockerCommandError(self.compose.command(*args, service), result.returncode,
                                     "compose exited with an error (its output is above)")


def compose_message(stderr: str) -> str:
    """Compose's own explanation, on one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return " ".join(lines)[:500] if lines else "unknown error"


def _flag_values(args: Sequence[str], flag: str) -> List[str]:
    return [args[i + 1] for i in range(len(args) - 1) if args[i] == flag]


def _flag_value(args: Sequence[str], flag: str) -> Optional[str]:
    values = _flag_values(args, flag)
    return values[-1] if values else None


def docker_binary(environ: Mapping[str, str]) -> str:
    """The docker CLI that ran us (plugin mode), else the one on PATH."""
    return environ.get("DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND") or "docker"



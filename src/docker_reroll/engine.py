"""The thin layer that talks to Docker: the user's own `docker` CLI and compose, with the user's global flags.

Docker is reached only through here (processes.py runs the commands within their bounds). Engine JSON is parsed
here into small dataclasses, by pure functions that the unit tests feed with saved engine output. `Engine` is what
the rest of the package asks of this layer: `Docker` gives it, and the unit tests share an in-memory fake of it.
"""

import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence

from docker_reroll.clone import Clone, clone, connect_args
from docker_reroll.compose import Compose, ComposeCalls
from docker_reroll.errors import (
    DockerCommandError,
    EngineUnreachable,
    engine_unreachable,
    first_line,
)
from docker_reroll.model import (
    LABEL_PROJECT,
    LABEL_SERVICE,
    Container,
    ContainerEvent,
    ProjectConfig,
    parse_event,
    parse_inspect,
)
from docker_reroll.options import DockerFlag, docker_flag_args
from docker_reroll.processes import CommandRunner, Result, Session

DOCKER_CALL_TIMEOUT = 120.0  # a plain docker call (inspect, ps, rm...) that takes longer is stuck: give up on it
ENGINE_PROBE_TIMEOUT = 5.0  # `docker version` while the engine may be restarting
STOP_TIMEOUT_MARGIN = 60.0  # `docker stop` may take each container's own grace period; this much on top of it


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


# ---------------------------------------------------------------------------------------------------- the interface


class EventSubscription(Protocol):
    """What `Engine.events` returns: the subscription, ended by close()."""

    def close(self) -> None: ...


class Engine(Protocol):
    """What the rest of the package asks of the engine: `Docker` below, or an in-memory fake in the unit tests.
    Every call that fails raises DockerCommandError (EngineUnreachable when no engine answers)."""

    @property
    def environ(self) -> Mapping[str, str]: ...

    @property
    def runner(self) -> CommandRunner: ...  # runs the user's own commands (pre-stop), with their bounds

    @property
    def answered_since(self) -> float: ...  # time.monotonic() when a call was made again after an outage; or 0

    def docker(self, *args: str) -> List[str]: ...

    def run(self, *args: str, **kwargs: object) -> Result: ...

    def environment_for_user_commands(self) -> Dict[str, str]: ...

    def project_containers(self, project: str) -> List[Container]: ...

    def service_container_ids(self, project: str, service: str) -> List[str]: ...

    def inspect(self, ids: Iterable[str]) -> List[Container]: ...

    def inspect_raw(self, ids: Sequence[str]) -> List[Dict[str, object]]: ...

    def stop(self, ids: Sequence[str], grace_seconds: float) -> None: ...

    def remove(self, ids: Sequence[str]) -> None: ...

    def remove_volumes(self, names: Sequence[str]) -> None: ...

    def start(self, container_id: str) -> None: ...

    def pause(self, ids: Sequence[str]) -> None: ...

    def unpause(self, ids: Sequence[str]) -> None: ...

    def plan_clone(self, item: Mapping[str, object], number: int) -> Clone: ...

    def create_clone(self, item: Mapping[str, object], number: int) -> str: ...

    def image_ids(self, names: Sequence[str]) -> Dict[str, Optional[str]]: ...

    def image_has_healthcheck(self, image: str) -> Optional[bool]: ...

    def logs_tail(self, container_id: str, lines: int = 20) -> str: ...

    def exec_in(self, container_id: str, argv: Sequence[str], input_bytes: bytes = b"",
                timeout: float = DOCKER_CALL_TIMEOUT) -> Result: ...

    def exec_session(self, container_id: str, argv: Sequence[str], end: str) -> Session: ...

    def copy_into(self, container_id: str, directory: str, files: Mapping[str, str]) -> None: ...

    def kill(self, container_id: str, signal_name: str) -> None: ...

    def events(self, project: str, service: str,
               on_event: Callable[[Optional[ContainerEvent]], None]) -> EventSubscription: ...

    def load_project(self) -> ProjectConfig: ...

    def services_in_any_profile(self) -> List[str]: ...

    def config_hashes(self) -> Dict[str, str]: ...

    def compose_up(self, service: str, *, scale: Optional[int], no_deps: bool,
                   cancel: Callable[[], bool], start: bool = True, recreate: bool = False,
                   on_line: Optional[Callable[[str], None]] = None) -> None: ...


# ------------------------------------------------------------------------------------------------ docker and compose


TLS_FILES = {"--tlscacert": "ca.pem", "--tlscert": "cert.pem", "--tlskey": "key.pem"}  # what docker looks for


def user_command_environment(environ: Mapping[str, str], docker_globals: Sequence[DockerFlag],
                             cert_dir: Callable[[Dict[str, str]], str]) -> Dict[str, str]:
    """The environment for commands run for the user (--pre-stop-cmd): this deploy's engine and TLS settings as
    the variables docker reads, so `docker exec {id} ...` there reaches the engine the deploy runs on.

    Docker prefers DOCKER_HOST to DOCKER_CONTEXT, so a --context drops an exported DOCKER_HOST. TLS files given by
    flag are found by docker only under the names it expects in DOCKER_CERT_PATH: `cert_dir` makes such a
    directory (given the files by those names) and returns it."""
    env = dict(environ)
    flags = dict(docker_globals)  # a flag given twice: the last one counts, as in docker
    if isinstance(flags.get("--context"), str):
        env["DOCKER_CONTEXT"] = str(flags["--context"])
        env.pop("DOCKER_HOST", None)
    if isinstance(flags.get("--host"), str):
        env["DOCKER_HOST"] = str(flags["--host"])
        env.pop("DOCKER_CONTEXT", None)
    if isinstance(flags.get("--config"), str):
        env["DOCKER_CONFIG"] = str(flags["--config"])
    verify = flags.get("--tlsverify")
    if verify is not None:  # given at all, true or false, it turns TLS on (docker's rule); verifying as given
        env["DOCKER_TLS"] = "1"
        if verify is True:
            env["DOCKER_TLS_VERIFY"] = "1"
        else:
            env.pop("DOCKER_TLS_VERIFY", None)
    if flags.get("--tls") is True:
        env["DOCKER_TLS"] = "1"
    elif flags.get("--tls") is False and verify is None:
        env.pop("DOCKER_TLS", None)
    given = {TLS_FILES[flag]: str(value) for flag, value in flags.items() if flag in TLS_FILES}
    if given:
        defaults = env.get("DOCKER_CERT_PATH") or env.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
        files = {name: given.get(name, os.path.join(defaults, name)) for name in TLS_FILES.values()}
        env["DOCKER_CERT_PATH"] = cert_dir(files)
    return env


class Docker(ComposeCalls):
    """Docker and compose calls for one project, with the user's global flags on every call."""

    def __init__(self, docker_binary: str, docker_globals: Sequence[DockerFlag], project_args: Sequence[str],
                 environ: Mapping[str, str], runner: Optional[CommandRunner] = None) -> None:
        self.docker_argv = [docker_binary] + docker_flag_args(docker_globals)
        self.docker_globals = list(docker_globals)
        self._cert_dir: Optional[str] = None
        self.project_args = list(project_args)
        self.environ = dict(environ)
        self.runner = runner or CommandRunner()
        self.compose: Optional[Compose] = None
        # Called with the CLI's error when the engine does not answer; True once it answers again (set by the
        # runner, which can say so and notice interrupts). None: no waiting, the call fails at once.
        self.await_engine: Optional[Callable[[str], bool]] = None
        self.engine_seen = False  # a call reached the engine this run
        self.answered_since = 0.0  # when a call was made again after the engine came back (time.monotonic())

    # -- plain docker

    def docker(self, *args: str) -> List[str]:
        return self.docker_argv + list(args)

    def run(self, *args: str, **kwargs: object) -> Result:
        kwargs.setdefault("timeout", DOCKER_CALL_TIMEOUT)
        return self.call(self.docker(*args), **kwargs)  # type: ignore[arg-type]

    def call(self, argv: Sequence[str], check: bool = True, **kwargs: object) -> Result:
        """Every call that needs the engine comes through here: when the engine does not answer (a restarting
        dockerd), `await_engine` waits for it a bounded time, and the call is made once more; if it does not come
        back, EngineUnreachable."""
        result = self.runner.run(argv, check=False, **kwargs)  # type: ignore[arg-type]
        if result.returncode != 0 and engine_unreachable(result.stderr):
            # An engine that never answered this run is refused at once; one that went away is waited for.
            if not self.engine_seen or self.await_engine is None or not self.await_engine(first_line(result.stderr)):
                raise EngineUnreachable(list(argv), result.returncode, result.stderr)
            self.answered_since = time.monotonic()
            result = self.runner.run(argv, check=False, **kwargs)  # type: ignore[arg-type]
        elif result.returncode == 0:
            self.engine_seen = True
        if check and result.returncode != 0:
            error = EngineUnreachable if engine_unreachable(result.stderr) else DockerCommandError
            raise error(list(argv), result.returncode, result.stderr)
        return result

    def engine_answers(self) -> bool:
        """Whether the engine answers now (one quick call, outside the waiting above)."""
        result = self.runner.run(self.docker("version", "--format", "{{.Server.Version}}"), check=False,
                                 timeout=ENGINE_PROBE_TIMEOUT)
        return result.returncode == 0 and bool(result.stdout.strip())

    def environment_for_user_commands(self) -> Dict[str, str]:
        return user_command_environment(self.environ, self.docker_globals, self._make_cert_dir)

    def _make_cert_dir(self, files: Dict[str, str]) -> str:
        """A private directory where docker finds the TLS files by the names it expects (removed by close())."""
        if self._cert_dir is None:
            self._cert_dir = tempfile.mkdtemp(prefix="docker-reroll-tls-")
            for name, path in files.items():
                if os.path.exists(path):
                    os.symlink(os.path.abspath(path), os.path.join(self._cert_dir, name))
        return self._cert_dir

    def close(self) -> None:
        if self._cert_dir is not None:
            shutil.rmtree(self._cert_dir, ignore_errors=True)
            self._cert_dir = None

    def project_containers(self, project: str) -> List[Container]:
        """Every container of the project's services, in any state (one-off `run` containers excluded)."""
        ids = self.run("ps", "--all", "--quiet", "--no-trunc", "--filter", f"label={LABEL_PROJECT}={project}").stdout
        return [c for c in self.inspect(ids.split()) if not c.oneoff and c.service]

    def service_container_ids(self, project: str, service: str) -> List[str]:
        """The ids of all containers with the service's compose labels, in any state."""
        return self.run("ps", "--all", "--quiet", "--no-trunc",
                        "--filter", f"label={LABEL_PROJECT}={project}",
                        "--filter", f"label={LABEL_SERVICE}={service}").stdout.split()

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

    def stop(self, ids: Sequence[str], grace_seconds: float) -> None:
        """Stop with each container's own stop signal and grace period (from the compose file); `grace_seconds` is
        the longest of those, to bound how long this may take."""
        self._on_many("stop", ids, timeout=grace_seconds + STOP_TIMEOUT_MARGIN)

    def remove(self, ids: Sequence[str]) -> None:
        """Remove containers, running or not (one already gone is no failure). Anonymous volumes are kept, as
        compose keeps them: they may hold data."""
        self._on_many("rm", ids, "--force")

    def remove_volumes(self, names: Sequence[str]) -> None:
        self._on_many("volume", names, "rm", "--force")

    def start(self, container_id: str) -> None:
        self._on_many("start", [container_id])

    def pause(self, ids: Sequence[str]) -> None:
        self._on_many("pause", ids)

    def unpause(self, ids: Sequence[str]) -> None:
        self._on_many("unpause", ids)

    def _on_many(self, command: str, ids: Sequence[str], *flags: str, timeout: float = DOCKER_CALL_TIMEOUT) -> None:
        """One call for many objects; raises DockerCommandError with every object's failure, leaving out the ones
        about objects that are already gone."""
        if not ids:
            return
        argv = self.docker(command, *flags, *ids)
        result = self.call(argv, check=False, timeout=timeout)
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        failures = [line for line in lines if "No such" not in line and "no such" not in line]
        if failures or (result.returncode != 0 and not lines):
            raise DockerCommandError(argv, result.returncode, "\n".join(failures))

    def plan_clone(self, item: Mapping[str, object], number: int) -> Clone:
        """How to make a container like `item` (its `docker inspect`) again, numbered `number`, with what the
        engine knows beyond it: the image's own health check (then inherited exactly) and whether the container
        has a /bin/sh (through which an exec-form health check can only be made again)."""
        image = self.run("image", "inspect", "--format", "{{json .Config.Healthcheck}}", str(item.get("Image")),
                         check=False)
        image_check = json.loads(image.stdout or "null") if image.returncode == 0 else None
        shell = self.run("cp", "--follow-link", f"{item.get('Id')}:/bin/sh", "-", check=False).returncode == 0
        return clone(item, number, image_check, shell)

    def create_clone(self, item: Mapping[str, object], number: int) -> str:
        """Make a container like `item` (its `docker inspect`), numbered `number`; returns its id, not started."""
        made = self.plan_clone(item, number)
        container_id = self.run("container", "create", *made.args).stdout.strip()
        for network in made.more_networks:
            self.run(*connect_args(network, container_id))
        return container_id

    def inspect_raw(self, ids: Sequence[str]) -> List[Dict[str, object]]:
        """`docker inspect` as the engine gives it (for what the dataclasses above leave out)."""
        return json.loads(self.run("container", "inspect", *ids).stdout or "[]") if ids else []

    def image_ids(self, names: Sequence[str]) -> Dict[str, Optional[str]]:
        """The id each image name resolves to on the engine now (None: no such image there), one call per name,
        all at once."""
        from docker_reroll.processes import concurrently

        def image_id(name: str) -> Optional[str]:
            result = self.run("image", "inspect", "--format", "{{.Id}}", name, check=False)
            return result.stdout.strip() or None if result.returncode == 0 else None

        return dict(zip(names, concurrently([functools.partial(image_id, name) for name in names])))

    def image_has_healthcheck(self, image: str) -> Optional[bool]:
        """Whether the image defines a HEALTHCHECK; None when it is not on the engine (yet)."""
        result = self.run("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image, check=False)
        if result.returncode != 0:
            return None
        test = (json.loads(result.stdout or "null") or {}).get("Test") or []
        return bool(test) and test[:1] != ["NONE"]

    def exec_in(self, container_id: str, argv: Sequence[str], input_bytes: bytes = b"",
                timeout: float = DOCKER_CALL_TIMEOUT) -> Result:
        """`docker exec` (with `-i` when there is input): a command inside a running container, such as a proxy's
        own tools. The caller judges the result."""
        flags = ["-i"] if input_bytes else []
        return self.call(self.docker("exec", *flags, container_id, *argv), check=False, timeout=timeout,
                         input_bytes=input_bytes)

    def exec_session(self, container_id: str, argv: Sequence[str], end: str) -> Session:
        """`docker exec -i` of a command that answers line after line (processes.Session), for many small calls
        in one exec."""
        return Session(self.docker("exec", "-i", container_id, *argv), end, self.runner.stats)

    def copy_into(self, container_id: str, directory: str, files: Mapping[str, str]) -> None:
        """Write text files into a container's `directory` (made if missing) with `docker cp`, which needs no
        shell in the image: a tar archive on its standard input, unpacked in the directory's parent."""
        import io
        import tarfile

        parent, _, name = directory.rstrip("/").rpartition("/")
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            folder = tarfile.TarInfo(name)
            folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
            tar.addfile(folder)
            for file_name, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(f"{name}/{file_name}")
                info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        self.call(self.docker("cp", "-", f"{container_id}:{parent or '/'}"), input_bytes=archive.getvalue())

    def kill(self, container_id: str, signal_name: str) -> None:
        """`docker kill -s`: a signal to the container's main process (a proxy's reload)."""
        self.run("kill", "--signal", signal_name, container_id)

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

def docker_binary(environ: Mapping[str, str]) -> str:
    """The docker CLI that ran us (plugin mode), else the one on PATH. For `__complete` the CLI (28.x) names the
    plugin itself there: that is no docker."""
    path = environ.get("DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND") or "docker"
    return "docker" if os.path.basename(path).startswith("docker-") else path



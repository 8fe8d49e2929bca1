"""Compose, called the way the user would: v2 as `docker [globals] compose [project flags]`, or the legacy
standalone `docker-compose` v1 when there is no v2. Compose itself resolves files, profiles and the project's name;
this module only asks it (config) and has it act (up)."""

import os
import re
import signal
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from docker_reroll.errors import DockerCommandError, RefusedError
from docker_reroll.model import ProjectConfig, ServiceSpec, parse_compose_config
from docker_reroll.options import DockerFlag
from docker_reroll.processes import CommandRunner, Result

COMPOSE_CALL_TIMEOUT = 120.0  # `compose config` and friends; `up` has none (it may build images)


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


def legacy_compose(project_args: Sequence[str], docker_globals: Sequence[DockerFlag],
                   environ: Mapping[str, str]) -> Compose:
    """docker-compose v1 takes most of docker's global flags itself; --config becomes DOCKER_CONFIG."""
    argv = ["docker-compose"]
    env = dict(environ)
    for flag, value in docker_globals:
        if value is True:
            argv.append(LEGACY_BOOL_GLOBALS[flag])
        elif flag == "--config" and isinstance(value, str):
            env["DOCKER_CONFIG"] = value
        elif flag in LEGACY_GLOBALS and isinstance(value, str):
            argv += [flag, value]
    return Compose(argv + list(project_args), legacy=True, env=env)


NOT_A_DOCKER_COMMAND = ("is not a docker command", "unknown command", "unknown flag", "unknown shorthand flag")
NO_COMPOSE_FILE = ("no configuration file provided", "Can't find a suitable configuration file")  # v2, v1
COMPOSE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")



class ComposeCalls:
    """The compose half of `engine.Docker`: loading the project and `up`. Every call goes through Docker's `call`
    funnel or its runner, with the user's global flags."""

    compose: Optional[Compose]
    project_args: List[str]
    docker_globals: List[DockerFlag]
    environ: Dict[str, str]
    runner: CommandRunner

    def docker(self, *args: str) -> List[str]:
        raise NotImplementedError

    def call(self, argv: Sequence[str], check: bool = True, **kwargs: object) -> Result:
        raise NotImplementedError


    def load_project(self) -> ProjectConfig:
        """Ask compose for the project (so its rules for names, files and profiles apply), with v2 if there is
        one, else the legacy v1."""
        v2 = Compose(self.docker("compose", *self.project_args))
        result = self.runner.run(v2.command("config", "--format", "json"), check=False, timeout=COMPOSE_CALL_TIMEOUT)
        if result.returncode == 0:
            self.compose = v2
            project = parse_compose_config(result.stdout)
            if not project.name:
                raise RefusedError("compose did not report the project's name: a newer compose v2 is needed")
            return project
        # Without the v2 plugin docker itself answers, and how depends on the flags (`unknown flag:
        # --project-name`): decide from a call with none, so a real compose error is never taken for "no v2".
        if any(marker in result.stderr for marker in NOT_A_DOCKER_COMMAND) and not self._has_compose_v2():
            return self._load_legacy_project()
        raise self._cannot_load(result.stderr)

    def _has_compose_v2(self) -> bool:
        version = self.runner.run(self.docker("compose", "version"), check=False, timeout=COMPOSE_CALL_TIMEOUT)
        return version.returncode == 0

    def _cannot_load(self, stderr: str) -> RefusedError:
        if any(marker in stderr for marker in NO_COMPOSE_FILE):
            directory = _flag_value(self.project_args, "--project-directory") or os.getcwd()
            return RefusedError(
                f"no compose file in {directory} or its parent directories (compose looks for "
                f"{', '.join(COMPOSE_FILE_NAMES)}): run this in the project's directory, or name the file with -f"
            )
        return RefusedError(f"compose cannot load the project: {compose_message(stderr)}")

    def _load_legacy_project(self) -> ProjectConfig:
        legacy = legacy_compose(self.project_args, self.docker_globals, self.environ)
        try:
            result = self.runner.run(legacy.command("config", "--services"), check=False, env=legacy.env,
                                     timeout=COMPOSE_CALL_TIMEOUT)
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
        return ProjectConfig(name=name, services={s: ServiceSpec(name=s, known=False) for s in services})

    def services_in_any_profile(self) -> List[str]:
        assert self.compose is not None
        if self.compose.legacy:
            return []
        result = self.runner.run(self.compose.command("--profile", "*", "config", "--services"), check=False,
                                 timeout=COMPOSE_CALL_TIMEOUT)
        return result.stdout.split() if result.returncode == 0 else []

    def config_hashes(self) -> Dict[str, str]:
        """Per service, the config hash compose would label a container with now (v2 only; v1 cannot tell)."""
        assert self.compose is not None
        if self.compose.legacy:
            return {}
        result = self.runner.run(self.compose.command("config", "--hash", "*"), timeout=COMPOSE_CALL_TIMEOUT)
        return dict(line.split(None, 1) for line in result.stdout.splitlines() if len(line.split()) == 2)

    def compose_up(self, service: str, *, scale: Optional[int], no_deps: bool,
                   cancel: Callable[[], bool], start: bool = True, recreate: bool = False,
                   on_line: Optional[Callable[[str], None]] = None) -> None:
        """`up -d` for one service, at `scale` containers if given, leaving its dependencies alone if `no_deps`,
        and only creating the new containers if not `start`. `cancel` stops compose (with SIGINT, as Ctrl-C would:
        it then stops cleanly); it has no time limit, since it may be building an image.

        Existing containers are never recreated (--no-recreate: new ones get the current config and image), unless
        `recreate`: then compose replaces what changed its own way, stopping the old before starting the new.
        Compose's output goes to our stderr, or, with `on_line`, line by line to it (the live display folds it
        in)."""
        assert self.compose is not None
        # compose v1 refuses --no-start with --detach; without starting anything, up returns at once anyway.
        args = ["up"] + ([] if recreate else ["--no-recreate"]) + (["--detach"] if start else ["--no-start"])
        args += ["--no-deps"] if no_deps else []
        if scale is not None:
            args += ["--scale", f"{service}={scale}"]
        result = self.call(self.compose.command(*args, service), capture=on_line is not None, cancel=cancel,
                           stop_signal=signal.SIGINT, check=False, env=self.compose.env, on_line=on_line)
        if result.returncode != 0:
            raise DockerCommandError(self.compose.command(*args, service), result.returncode,
                                     compose_message(result.stderr) if on_line else
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

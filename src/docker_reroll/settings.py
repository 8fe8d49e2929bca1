"""What a deploy is asked to do: every setting with its default, and where each value came from.

The command line fills these in (cli.py) and the deploy reads them (deploy.py); neither imports the other. Each
value remembers its source, so a plan or a log line can say why a wait lasts as long as it does.

Plain classes, not dataclasses: the CLI imports this on the `docker-cli-plugin-metadata` and `--help` path, which
runs on every `docker` invocation that lists plugins and must stay fast.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

# One of docker's global options, by its long name: a value, or True/False for a boolean one (`--tls`).
DockerFlag = Tuple[str, Union[str, bool]]

DEFAULT_HEALTHCHECK_TIMEOUT = 60.0
DEFAULT_WAIT = 10.0
DEFAULT_WAIT_AFTER_HEALTHY = 0.0
DEFAULT_WAIT_AFTER_UNHEALTHY = 0.0
# How long a drained container keeps running after its pre-stop command, at least: the time a proxy needs to see
# the failing check and stop routing to it. 1 s is what the original tool gave by polling once a second.
DEFAULT_DRAIN_TIME = 1.0
DEFAULT_LOCK_TIMEOUT = 0.0
MAX_SECONDS = 7 * 24 * 3600.0  # a week: any larger wait is a typo, and huge values overflow timers

FROM_DEFAULT = "default"
FROM_COMMAND_LINE = "command line"


class Options:
    """Everything the user asked for, parsed and checked."""

    def __init__(self) -> None:
        self.service = ""
        self.files: List[str] = []
        self.env_files: List[str] = []
        self.project_name: Optional[str] = None
        self.project_directory: Optional[str] = None
        self.profiles: List[str] = []
        self.pre_stop_cmd: Optional[str] = None
        self.pre_stop_wait_until_unhealthy = False
        self.healthcheck_timeout = DEFAULT_HEALTHCHECK_TIMEOUT
        self.wait = DEFAULT_WAIT
        self.wait_after_healthy = DEFAULT_WAIT_AFTER_HEALTHY
        self.wait_after_unhealthy = DEFAULT_WAIT_AFTER_UNHEALTHY
        self.drain_time = DEFAULT_DRAIN_TIME
        self.lock_timeout = DEFAULT_LOCK_TIMEOUT
        self.scale: Dict[str, int] = {}  # --scale SERVICE=NUM
        self.help = False
        self.version = False
        self.docker_globals: List[DockerFlag] = []
        self.args: List[str] = []  # our part of the command line, as given
        self.sources: Dict[str, str] = {}  # setting -> where its value came from; absent: the default

    def set(self, name: str, value: object, source: str) -> None:
        setattr(self, name, value)
        self.sources[name] = source

    def source(self, name: str) -> str:
        return self.sources.get(name, FROM_DEFAULT)

    def compose_project_args(self) -> List[str]:
        """The project-selecting flags, in the user's order, for every compose call."""
        args: List[str] = []
        for path in self.files:
            args += ["--file", path]
        for path in self.env_files:
            args += ["--env-file", path]
        if self.project_name is not None:
            args += ["--project-name", self.project_name]
        if self.project_directory is not None:
            args += ["--project-directory", self.project_directory]
        for profile in self.profiles:
            args += ["--profile", profile]
        return args


def docker_flag_args(flags: Sequence[DockerFlag]) -> List[str]:
    """Docker's global options back into arguments, as the docker CLI reads them."""
    args: List[str] = []
    for name, value in flags:
        if value is True:
            args.append(name)
        elif value is False:
            args.append(f"{name}=false")
        else:
            args += [name, str(value)]
    return args

"""What a deploy is asked to do: every setting with its default, and where each value came from.

The command line fills these in (cli.py) and the deploy reads them (deploy.py); neither imports the other. Each
value remembers its source, so a plan or a log line can say why a wait lasts as long as it does.

Plain classes, not dataclasses: the CLI imports this on the `docker-cli-plugin-metadata` and `--help` path, which
runs on every `docker` invocation that lists plugins and must stay fast.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

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
MAX_COUNT = 10000  # containers of a service or a batch: any more is a typo (and Python reads at most 4300 digits)

FROM_DEFAULT = "default"
FROM_COMMAND_LINE = "command line"

PROGRESS_MODES = ("auto", "tty", "plain", "json", "quiet")  # compose's names; auto: tty on a terminal, else plain
PROGRESS_ENV = "DOCKER_REROLL_PROGRESS"
STACK_ENV = "DOCKER_REROLL_STACK"
ALLOW_LABEL_CMD_ENV = "DOCKER_REROLL_ALLOW_LABEL_CMD"

FAILURE_ACTIONS = ("rollback", "pause", "continue")  # compose's (and Swarm's) deploy.update_config.failure_action
DEFAULT_FAILURE_ACTION = "rollback"  # what this tool has always done; Swarm itself would pause
UPDATE_ORDERS = ("start-first", "stop-first")


class Options:
    """Everything the user asked for, parsed and checked."""

    def __init__(self) -> None:
        self.files: List[str] = []
        self.env_files: List[str] = []
        self.project_name: Optional[str] = None
        self.project_directory: Optional[str] = None
        self.profiles: List[str] = []
        self.pre_stop_cmd: Optional[str] = None  # run on this machine through sh, {id} filled in
        self.pre_stop_exec: Optional[str] = None  # run inside each old container with docker exec
        self.pre_stop_wait_until_unhealthy = False
        # A compose file's docker-reroll.pre-stop-cmd runs on this machine only with --allow-label-cmd: a file
        # (from `include:`, a `${VAR}`) must not run host commands the user never typed.
        self.allow_label_cmd = False
        self.healthcheck_timeout = DEFAULT_HEALTHCHECK_TIMEOUT
        self.wait = DEFAULT_WAIT
        self.wait_after_healthy = DEFAULT_WAIT_AFTER_HEALTHY
        self.wait_after_unhealthy = DEFAULT_WAIT_AFTER_UNHEALTHY
        self.drain_time = DEFAULT_DRAIN_TIME
        self.lock_timeout = DEFAULT_LOCK_TIMEOUT
        self.scale: Dict[str, int] = {}  # --scale SERVICE=NUM
        self.services: List[str] = []  # in the order given
        self.all = False  # --all: every service of the project
        # A rolling update in batches (--max-surge, or the service's deploy.update_config): None starts all new
        # containers at once.
        self.max_surge: Optional[int] = None
        self.update_delay = 0.0
        self.update_monitor = 0.0
        self.failure_action = DEFAULT_FAILURE_ACTION
        self.max_failure_ratio = 0.0
        self.update_order = "start-first"
        self.stack: Optional[str] = None  # a Swarm stack: its service is deployed with Swarm's rolling update
        self.image: Optional[str] = None  # with a stack: the new image
        self.progress = "auto"  # how progress is shown: auto, tty, plain, json or quiet (progress.py)
        self.dry_run = False
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

    @property
    def pre_stop(self) -> bool:
        """A pre-stop command of either kind is set."""
        return bool(self.pre_stop_cmd or self.pre_stop_exec)

    def for_service(self, service: str, update_config: Mapping[str, object],
                    labels: Mapping[str, str]) -> "Options":
        """These options for one service: its compose file fills in what the command line left out, from the
        service's `docker-reroll.*` labels and its deploy.update_config. A bad update_config value is a
        ValueError; a bad label, a usage error naming the label and the service."""
        import copy

        resolved = copy.copy(self)
        resolved.sources = dict(self.sources)
        source = "deploy.update_config"
        for key, name, read in (("parallelism", "max_surge", _parallelism), ("delay", "update_delay", go_duration),
                                ("monitor", "update_monitor", go_duration),
                                ("failure_action", "failure_action", _one_of(FAILURE_ACTIONS)),
                                ("max_failure_ratio", "max_failure_ratio", _ratio),
                                ("order", "update_order", _one_of(UPDATE_ORDERS))):
            if key in update_config and update_config[key] is not None and name not in self.sources:
                try:
                    value = read(update_config[key])
                except ValueError as error:
                    raise ValueError(f"{source}.{key}: {error}") from None
                resolved.set(name, value, f"{source}.{key}")
        pre_stop_given = "pre_stop_cmd" in self.sources or "pre_stop_exec" in self.sources
        for suffix, (name, parse) in LABEL_SETTINGS.items():
            label = LABEL_PREFIX + suffix
            if label not in labels or name in self.sources or (name.startswith("pre_stop_") and pre_stop_given
                                                               and name != "pre_stop_wait_until_unhealthy"):
                continue
            try:
                setting = parse(labels[label])
            except ValueError as error:
                from docker_reroll.errors import UsageError

                raise UsageError(f"invalid value '{labels[label]}' for label {label} of service '{service}': "
                                 f"{error}") from None
            resolved.set(name, setting, f"label {label}")
        if resolved.pre_stop_cmd and resolved.pre_stop_exec:
            from docker_reroll.errors import UsageError

            raise UsageError(f"service '{service}' sets both {LABEL_PREFIX}pre-stop-cmd and "
                             f"{LABEL_PREFIX}pre-stop-exec: keep one")
        if resolved.source("pre_stop_cmd").startswith("label "):
            if not self.allow_label_cmd:
                from docker_reroll.errors import RefusedError

                raise RefusedError(
                    f"service '{service}' sets the label {LABEL_PREFIX}pre-stop-cmd, a command for this machine's "
                    "shell, which a compose file may not run unless you allow it: add --allow-label-cmd (or "
                    f"{ALLOW_LABEL_CMD_ENV}=1), or use the label {LABEL_PREFIX}pre-stop-exec, which runs inside "
                    "the old container and needs no permission")
            resolved.sources["pre_stop_cmd"] += f", allowed by {self.source('allow_label_cmd')}"
        return resolved

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


GO_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(value: object) -> float:
    """A duration as compose writes it (Go's format: `2s`, `1m30s`, `500ms`; a bare number is nanoseconds), in
    seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / 1e9
    text, seconds, number = str(value).strip(), 0.0, ""
    i = 0
    while i < len(text):
        if text[i].isdigit() or text[i] == ".":
            number += text[i]
            i += 1
            continue
        unit = next((u for u in sorted(GO_UNITS, key=len, reverse=True) if text.startswith(u, i)), None)
        if unit is None or not number or number.count(".") > 1:
            raise ValueError(f"not a duration: {value!r}")
        seconds += float(number) * GO_UNITS[unit]
        number, i = "", i + len(unit)
    if number or not text:
        raise ValueError(f"not a duration: {value!r}")
    return seconds


def _parallelism(value: object) -> Optional[int]:
    try:
        count = parse_count(str(value), least=0)
    except ValueError as error:
        raise ValueError(f"{error}, not {value!r}") from None
    return count or None  # 0: all at once, as Swarm reads it


def parse_count(text: str, least: int = 1) -> int:
    """A number of containers: ASCII digits only, from `least` to MAX_COUNT."""
    significant = text.lstrip("0")
    if not (text.isascii() and text.isdigit() and len(significant) <= len(str(MAX_COUNT))
            and least <= int(significant or "0") <= MAX_COUNT):
        raise ValueError(f"expected a whole number from {least} to {MAX_COUNT}")
    return int(significant or "0")


def _ratio(value: object) -> float:
    ratio = float(str(value))
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"must be between 0 and 1, not {value!r}")
    return ratio


def _one_of(choices: Sequence[str]) -> Callable[[object], str]:
    def read(value: object) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {value!r}")
        return str(value)

    return read


def parse_seconds(text: str) -> float:
    """`2`, `2.5`, `.5` and `5.`, as a float parser reads them; no sign, exponent, inf or nan; at most a week."""
    whole, dot, fraction = text.partition(".")
    digits = all("0" <= ch <= "9" for ch in whole + fraction)
    if not (digits and (whole or fraction)):
        raise ValueError("expected a non-negative number of seconds")
    seconds = float(text)
    if seconds > MAX_SECONDS:
        raise ValueError(f"at most {int(MAX_SECONDS)} seconds")
    return seconds


def _flag(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise ValueError("expected true or false")


def host_command(text: str) -> str:
    """A command run through `sh -c` on this machine (`--pre-stop-cmd`): a blank one would turn the drain off."""
    if not text.strip():
        raise ValueError("expected a command")
    return text


def exec_command(text: str) -> str:
    """A command run inside a container (`--pre-stop-exec`): it must split into words as a shell would."""
    import shlex  # here, not at the top: the metadata and --help path stays fast

    try:
        words = shlex.split(text)
    except ValueError as error:
        raise ValueError(f"it does not split into words ({str(error).lower()})") from None
    if not words:
        raise ValueError("expected a command")
    return text


LABEL_PREFIX = "docker-reroll."
# A service's deploy settings as labels in the compose file: the label's name after the prefix -> the setting.
LABEL_SETTINGS: Dict[str, Tuple[str, Callable[[str], object]]] = {
    "pre-stop-cmd": ("pre_stop_cmd", host_command),
    "pre-stop-exec": ("pre_stop_exec", exec_command),
    "pre-stop-wait-until-unhealthy": ("pre_stop_wait_until_unhealthy", _flag),
    "drain-time": ("drain_time", parse_seconds),
    "wait-after-unhealthy": ("wait_after_unhealthy", parse_seconds),
    "healthcheck-timeout": ("healthcheck_timeout", parse_seconds),
    "wait": ("wait", parse_seconds),
    "wait-after-healthy": ("wait_after_healthy", parse_seconds),
}

# Every `docker-reroll.*` label the tool reads: the settings above, and how a release treats the service.
KNOWN_LABELS = tuple(sorted([LABEL_PREFIX + suffix for suffix in LABEL_SETTINGS] + [LABEL_PREFIX + "strategy"]))

# The settings a plan or a deploy's log shows, as the option that sets them.
SHOWN_SETTINGS = (("--pre-stop-cmd", "pre_stop_cmd"), ("--pre-stop-exec", "pre_stop_exec"),
                  ("--pre-stop-wait-until-unhealthy", "pre_stop_wait_until_unhealthy"),
                  ("--healthcheck-timeout", "healthcheck_timeout"), ("--wait", "wait"),
                  ("--wait-after-healthy", "wait_after_healthy"), ("--wait-after-unhealthy", "wait_after_unhealthy"),
                  ("--drain-time", "drain_time"), ("--max-surge", "max_surge"), ("--lock-timeout", "lock_timeout"))


def describe_settings(options: Options) -> List[Tuple[str, str, str]]:
    """(option, value, where the value came from) for each setting that matters to a deploy."""
    shown = []
    for flag, name in SHOWN_SETTINGS:
        value = getattr(options, name)
        if value is None or (name.startswith("pre_stop_") and not value and name != "pre_stop_wait_until_unhealthy"):
            continue
        text = f"{value:g}s" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else \
            str(value)
        shown.append((flag, text, options.source(name)))
    return shown


def settings_line(options: Options) -> str:
    return ", ".join(f"{flag} {value} ({source})" for flag, value, source in describe_settings(options))

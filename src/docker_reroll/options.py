"""Every setting of a deploy, declared once, in one table: its command-line spelling, the value it takes, its
default, its help, and where else it may come from (an environment variable, a `docker-reroll.*` label of the
service, compose's `deploy.update_config`). The help text, the label settings, the settings line of a plan and
shell completion are all made from this table.

An `Options` holds the values for a run; each value remembers its source (default, command line, an environment
variable, a label, update_config), so a plan or a log line can say why a wait lasts as long as it does.

Plain classes, not dataclasses: the CLI imports this on the `docker-cli-plugin-metadata` and `--help` path, which
runs on every `docker` invocation that lists plugins and must stay fast.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

# One of docker's global options, by its long name: a value, or True/False for a boolean one (`--tls`).
DockerFlag = Tuple[str, Union[str, bool]]

MAX_SECONDS = 7 * 24 * 3600.0  # a week: any larger wait is a typo, and huge values overflow timers
MAX_COUNT = 10000  # containers of a service or a batch: any more is a typo (and Python reads at most 4300 digits)

FROM_DEFAULT = "default"
FROM_COMMAND_LINE = "command line"
LABEL_PREFIX = "docker-reroll."

PROGRESS_MODES = ("auto", "tty", "plain", "json", "quiet")  # compose's names; auto: tty on a terminal, else plain
FAILURE_ACTIONS = ("rollback", "pause", "continue")  # compose's (and Swarm's) deploy.update_config.failure_action
UPDATE_ORDERS = ("start-first", "stop-first")


# ---------------------------------------------------------------------------------------------- value readers


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


def parse_count(text: str, least: int = 1) -> int:
    """A number of containers: ASCII digits only, from `least` to MAX_COUNT."""
    significant = text.lstrip("0")
    if not (text.isascii() and text.isdigit() and len(significant) <= len(str(MAX_COUNT))
            and least <= int(significant or "0") <= MAX_COUNT):
        raise ValueError(f"expected a whole number from {least} to {MAX_COUNT}")
    return int(significant or "0")


def parse_flag(text: str) -> bool:
    """A yes/no written in a label or an environment variable."""
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


def progress_mode(text: str) -> str:
    if text not in PROGRESS_MODES:
        raise ValueError(f"expected one of {', '.join(PROGRESS_MODES)}")
    return text


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


GO_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _parallelism(value: object) -> Optional[int]:
    try:
        count = parse_count(str(value), least=0)
    except ValueError as error:
        raise ValueError(f"{error}, not {value!r}") from None
    return count or None  # 0: all at once, as Swarm reads it


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


# How a value of each kind is read, from the command line, an environment variable or a label.
READERS: Dict[str, Callable[[str], object]] = {
    "seconds": parse_seconds, "count": parse_count, "choice": progress_mode, "exec": exec_command,
    "command": host_command, "flag": parse_flag, "text": str}


# ---------------------------------------------------------------------------------------------- the table


class Option:
    """One setting. `long` is its command-line spelling (None: set only by compose's deploy.update_config); `kind`
    what it takes: "flag", "text", "texts" (repeatable, order kept), "seconds", "count", "scale" (SERVICE=NUM),
    "choice", "exec" (a command in words) or "command" (a shell command). `default_text` is what the help shows as
    the default (None: the default value itself; "": nothing)."""

    def __init__(self, dest: str, kind: str, default: object, help: str = "", *, long: Optional[str] = None,
                 short: Optional[str] = None, value_name: str = "", default_text: Optional[str] = "",
                 env: Optional[str] = None, label: Optional[str] = None, update_config: Optional[str] = None,
                 read_update_config: Optional[Callable[[object], object]] = None, shown: bool = False,
                 drain: str = "") -> None:
        self.dest = dest
        self.kind = kind
        self.default = default
        self.help = help
        self.long = long
        self.short = short
        self.value_name = value_name
        self.default_text = default_text
        self.env = env
        self.label = label
        self.update_config = update_config
        self.read_update_config = read_update_config
        self.shown = shown  # in the settings line of a plan and of a deploy's log
        self.drain = drain  # a setting of one drain strategy only: HEALTH_CHECK_DRAIN or PROXY_DRAIN ("": both)

    @property
    def display(self) -> str:
        return str(self.long) if self.kind == "flag" else f"{self.long} <{self.value_name}>"

    @property
    def help_line(self) -> str:
        """The help as --help prints it, with its default."""
        shown = f"{self.default:g}" if self.default_text is None and isinstance(self.default, float) else \
            self.default_text
        return f"{self.help} [default: {shown}]" if shown else self.help


def _flag(long: str, dest: str, help: str, short: Optional[str] = None, **more: object) -> Option:
    return Option(dest, "flag", False, help, long=long, short=short, **more)  # type: ignore[arg-type]


def _value(long: str, dest: str, kind: str, default: object, help: str, value_name: str,
           short: Optional[str] = None, **more: object) -> Option:
    return Option(dest, kind, default, help, long=long, short=short, value_name=value_name,
                  **more)  # type: ignore[arg-type]


HEALTH_CHECK_DRAIN = "health-check drain"  # through the containers' health checks and a pre-stop command
PROXY_DRAIN = "proxy mode"  # the proxy told directly

PROGRESS_ENV = "DOCKER_REROLL_PROGRESS"
STACK_ENV = "DOCKER_REROLL_STACK"
ALLOW_LABEL_CMD_ENV = "DOCKER_REROLL_ALLOW_LABEL_CMD"

# The order is --help's.
OPTIONS: List[Option] = [
    _value("--file", "files", "texts", [], "Compose configuration file", "FILE", "-f"),
    _value("--env-file", "env_files", "texts", [], "Specify an alternate environment file", "ENV_FILE"),
    _value("--project-name", "project_name", "text", None, "Project name", "PROJECT_NAME", "-p"),
    _value("--project-directory", "project_directory", "text", None,
           "Specify an alternate working directory (default: the path of the first Compose file)",
           "PROJECT_DIRECTORY"),
    _value("--profile", "profiles", "texts", [], "Specify a profile to enable", "PROFILE"),
    _value("--pre-stop-cmd", "pre_stop_cmd", "command", None,
           "Command to run before stopping old container. {id} will be replaced with container id",
           "PRE_STOP_CMD", label="pre-stop-cmd", shown=True,
           drain=HEALTH_CHECK_DRAIN),
    _value("--pre-stop-exec", "pre_stop_exec", "exec", None,
           "Command to run inside each old container (docker exec) before stopping it, e.g. 'touch /.dead'",
           "PRE_STOP_EXEC", label="pre-stop-exec", shown=True,
           drain=HEALTH_CHECK_DRAIN),
    _flag("--pre-stop-wait-until-unhealthy", "pre_stop_wait_until_unhealthy",
          "Assuming there is a health check, after running the pre-stop command, wait until the old container is "
          "unhealthy before stopping it", label="pre-stop-wait-until-unhealthy", shown=True,
          drain=HEALTH_CHECK_DRAIN),
    _flag("--allow-label-cmd", "allow_label_cmd",
          "Run the command of a docker-reroll.pre-stop-cmd label on this machine (a compose file's host commands "
          "are refused otherwise)", default_text=f"{ALLOW_LABEL_CMD_ENV}, or false", env=ALLOW_LABEL_CMD_ENV),
    _value("--healthcheck-timeout", "healthcheck_timeout", "seconds", 60.0, "Health check timeout (in seconds)",
           "HEALTHCHECK_TIMEOUT", default_text=None, label="healthcheck-timeout", shown=True),
    _value("--wait", "wait", "seconds", 10.0,
           "Wait X seconds before stopping old container when there is no health check", "WAIT",
           default_text=None, label="wait", shown=True,
           drain=HEALTH_CHECK_DRAIN),
    _value("--wait-after-healthy", "wait_after_healthy", "seconds", 0.0,
           "When there is a health check and it succeeds, wait additional X seconds before stopping old container",
           "WAIT_AFTER_HEALTHY", default_text=None, label="wait-after-healthy", shown=True),
    _value("--wait-after-unhealthy", "wait_after_unhealthy", "seconds", 0.0,
           "After the pre-stop command (and the wait until unhealthy), wait additional X seconds before stopping "
           "old container, for proxies that react late", "WAIT_AFTER_UNHEALTHY", default_text=None,
           label="wait-after-unhealthy", shown=True,
           drain=HEALTH_CHECK_DRAIN),
    # How long a drained container keeps running after its pre-stop command, at least: the time a proxy needs to
    # see the failing check and stop routing to it. 1 s is what the original tool gave by polling once a second.
    _value("--drain-time", "drain_time", "seconds", 1.0,
           "Keep each old container running at least X seconds after its pre-stop command finished, so the proxy "
           "sees it fail, however soon Docker reports it unhealthy", "DRAIN_TIME", default_text=None,
           label="drain-time", shown=True,
           drain=HEALTH_CHECK_DRAIN),
    _value("--drain-timeout", "drain_timeout", "seconds", 30.0,
           "In proxy mode, wait up to X seconds for the proxy's connections to an old container to end before "
           "stopping it; those still open then are closed", "DRAIN_TIMEOUT", default_text=None,
           label="drain-timeout", shown=True, drain=PROXY_DRAIN),
    _flag("--all", "all", "Deploy every service of the project in dependency order: roll those that can run twice, "
                          "let compose recreate the others, skip those that run their current config"),
    _value("--max-surge", "max_surge", "count", None,
           "Replace at most X containers at a time: start X new ones, wait for them, retire X old ones, repeat",
           "MAX_SURGE", default_text="all at once, or deploy.update_config.parallelism",
           update_config="parallelism", read_update_config=_parallelism, shown=True),
    _value("--scale", "scale", "scale", {},
           "Scale SERVICE to NUM containers: the deploy ends with NUM containers on the new config, whatever ran "
           "before", "SERVICE=NUM", default_text="as many as run now"),
    _value("--lock-timeout", "lock_timeout", "seconds", 0.0,
           "Wait up to X seconds for another deploy of the same service to finish", "LOCK_TIMEOUT",
           default_text=None, shown=True),
    _value("--stack", "stack", "text", None,
           "Deploy the service of this Swarm stack (STACK_SERVICE) with Swarm's own rolling update", "STACK",
           default_text=f"{STACK_ENV}, or the stack that has the service when no compose project does",
           env=STACK_ENV),
    _value("--image", "image", "text", None, "With a stack: the new image", "IMAGE",
           default_text="the image and environment of the -f files, else the current ones, tasks replaced"),
    _value("--progress", "progress", "choice", "auto",
           "Set type of progress output (auto, tty, plain, json, quiet)", "PROGRESS",
           default_text=f"auto, or {PROGRESS_ENV}", env=PROGRESS_ENV),
    _flag("--dry-run", "dry_run", "Show what the deploy would do (containers, batches, waits, pre-stop commands, "
                                  "lock) and change nothing"),
    _flag("--help", "help", "Print help", "-h"),
    _flag("--version", "version", "Print version", "-V"),
    # Set only by the service's deploy.update_config (a rolling update in batches).
    Option("update_delay", "seconds", 0.0, update_config="delay", read_update_config=go_duration),
    Option("update_monitor", "seconds", 0.0, update_config="monitor", read_update_config=go_duration),
    # What this tool has always done; Swarm itself would pause.
    Option("failure_action", "choice", "rollback", update_config="failure_action",
           read_update_config=_one_of(FAILURE_ACTIONS)),
    Option("max_failure_ratio", "seconds", 0.0, update_config="max_failure_ratio", read_update_config=_ratio),
    Option("update_order", "choice", "start-first", update_config="order", read_update_config=_one_of(UPDATE_ORDERS)),
]
FLAGS = [option for option in OPTIONS if option.long]
OPTIONS_BY_NAME: Dict[str, Option] = {}
for _option in FLAGS:
    OPTIONS_BY_NAME[str(_option.long)] = _option
    if _option.short:
        OPTIONS_BY_NAME[_option.short] = _option
OPTIONS_BY_DEST = {option.dest: option for option in OPTIONS}
LABELED = [option for option in OPTIONS if option.label]
# Every label that sets a setting, with its full name.
SETTING_LABELS = tuple(LABEL_PREFIX + str(option.label) for option in LABELED)


def split_option_word(word: str) -> Tuple[str, Optional[str]]:
    """`--name=value`, `--name`, `-fvalue`, `-f=value` (clap's forms) into the name and the attached value."""
    if word.startswith("--"):
        name, eq, value = word.partition("=")
        return name, (value if eq else None)
    if len(word) > 2:
        return word[:2], word[3:] if word[2] == "=" else word[2:]
    return word, None


# ---------------------------------------------------------------------------------------------- the values


class Options:
    """Everything the user asked for, parsed and checked: one attribute per setting of the table (its default
    until something sets it), and what the command line names besides."""

    services: List[str]
    files: List[str]
    env_files: List[str]
    project_name: Optional[str]
    project_directory: Optional[str]
    profiles: List[str]
    pre_stop_cmd: Optional[str]  # run on this machine through sh, {id} filled in
    pre_stop_exec: Optional[str]  # run inside each old container with docker exec
    pre_stop_wait_until_unhealthy: bool
    # A compose file's docker-reroll.pre-stop-cmd runs on this machine only with --allow-label-cmd: a file (from
    # `include:`, a `${VAR}`) must not run host commands the user never typed.
    allow_label_cmd: bool
    healthcheck_timeout: float
    wait: float
    wait_after_healthy: float
    wait_after_unhealthy: float
    drain_time: float
    drain_timeout: float
    all: bool
    max_surge: Optional[int]  # a rolling update in batches; None starts all new containers at once
    scale: Dict[str, int]
    lock_timeout: float
    stack: Optional[str]  # a Swarm stack: its service is deployed with Swarm's rolling update
    image: Optional[str]  # with a stack: the new image
    progress: str
    dry_run: bool
    help: bool
    version: bool
    update_delay: float
    update_monitor: float
    failure_action: str
    max_failure_ratio: float
    update_order: str

    def __init__(self) -> None:
        for option in OPTIONS:
            default = option.default
            setattr(self, option.dest, type(default)() if isinstance(default, (list, dict)) else default)
        self.services = []  # in the order given
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

    def read_environment(self, environ: Mapping[str, str]) -> None:
        """The settings an environment variable may give, where the command line did not."""
        for option in OPTIONS:
            value = environ.get(option.env or "")
            if not value or option.dest in self.sources:
                continue
            try:
                self.set(option.dest, READERS[option.kind](value), str(option.env))
            except ValueError as error:
                from docker_reroll.errors import UsageError

                raise UsageError(f"invalid value '{value}' for {option.env}: {error}") from None

    def for_service(self, service: str, update_config: Mapping[str, object],
                    labels: Mapping[str, str]) -> "Options":
        """These options for one service: its compose file fills in what the command line left out, from the
        service's `docker-reroll.*` labels and its deploy.update_config. A bad update_config value is a
        ValueError; a bad label, a usage error naming the label and the service; a host command from a label that
        the user did not allow, a refusal."""
        import copy

        resolved = copy.copy(self)
        resolved.sources = dict(self.sources)
        for option in OPTIONS:
            key = option.update_config
            if key and update_config.get(key) is not None and option.dest not in self.sources:
                try:
                    value = option.read_update_config(update_config[key])  # type: ignore[misc]
                except ValueError as error:
                    raise ValueError(f"deploy.update_config.{key}: {error}") from None
                resolved.set(option.dest, value, f"deploy.update_config.{key}")
        # A pre-stop command on the command line replaces both pre-stop labels.
        pre_stop_given = "pre_stop_cmd" in self.sources or "pre_stop_exec" in self.sources
        for option in LABELED:
            label = LABEL_PREFIX + str(option.label)
            if label not in labels or option.dest in self.sources or (pre_stop_given and option.kind in
                                                                       ("command", "exec")):
                continue
            try:
                setting = READERS[option.kind](labels[label])
            except ValueError as error:
                from docker_reroll.errors import UsageError

                raise UsageError(f"invalid value '{labels[label]}' for label {label} of service '{service}': "
                                 f"{error}") from None
            resolved.set(option.dest, setting, f"label {label}")
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


def describe_settings(options: Options, proxy: bool = False) -> List[Tuple[str, str, str]]:
    """(option, value, where the value came from) for each setting that matters to a deploy: in proxy mode, not
    those of the health-check drain, and the other way round."""
    shown = []
    strategy = PROXY_DRAIN if proxy else HEALTH_CHECK_DRAIN
    for option in OPTIONS:
        value = getattr(options, option.dest)
        if not option.shown or value is None or (option.kind in ("command", "exec") and not value) or \
                option.drain not in ("", strategy):
            continue
        text = f"{value:g}s" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else \
            str(value)
        shown.append((str(option.long), text, options.source(option.dest)))
    return shown


def settings_line(options: Options, proxy: bool = False) -> str:
    return ", ".join(f"{flag} {value} ({source})" for flag, value, source in describe_settings(options, proxy))

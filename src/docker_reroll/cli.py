"""Command line: the plugin protocol's argv split, our options, help and usage errors.

Knows nothing about deploys. Kept free of heavy imports: `docker-cli-plugin-metadata` and `--help` run on every
`docker` invocation that lists plugins, so they must answer before anything else is loaded.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from docker_reroll import __version__
from docker_reroll.errors import EXIT_OK, EXIT_USAGE, UsageError
from docker_reroll.options import (
    FLAGS,
    FROM_COMMAND_LINE,
    MAX_COUNT,
    OPTIONS_BY_NAME,
    READERS,
    DockerFlag,
    Option,
    Options,
    parse_count,
    split_option_word,
)

if TYPE_CHECKING:
    from typing import Callable, List, Mapping, Optional, Sequence, TextIO, Tuple

PLUGIN_NAME = "reroll"
METADATA_COMMAND = "docker-cli-plugin-metadata"
COMPLETE_COMMAND = "__complete"  # cobra's shell completion protocol: docker runs `docker-reroll __complete reroll ..`
# Printed as a literal: importing json would cost more than the rest of the metadata path.
METADATA_JSON = (
    '{"SchemaVersion": "0.1.0", "Vendor": "docker-reroll", "Version": "' + __version__ + '", '
    '"ShortDescription": "Zero-downtime rolling deploy of a Docker Compose service"}'
)

USAGE = "Usage: docker reroll [OPTIONS] <SERVICE>...\n       docker reroll [OPTIONS] --all"


def render_help() -> str:
    """--help, clap's layout, from the option table."""
    lines = ["Zero-downtime rolling deploy of a Docker Compose service", "", USAGE, "", "Arguments:",
             "  <SERVICE>...  Services to deploy, one after another in this order", "", "Options:"]
    for option in FLAGS:
        names = f"  {option.short}, {option.long}" if option.short else f"      {option.long}"
        lines.append(names + ("" if option.kind == "flag" else f" <{option.value_name}>"))
        lines.append(f"          {option.help_line}")
    return "\n".join(lines) + "\n"


# Docker's own global options (docker/cli cli/flags), read as docker reads them (pflag): `--name value` or
# `--name=value`; shorthands attached (`-Hunix:///...`, `-H=...`) or combined (`-Dc prod`); booleans take only
# `=true|false`. They come before the plugin name and are forwarded to every docker and compose call, so
# `docker --context prod reroll web` deploys on prod.
DOCKER_VALUE_FLAGS = ("--config", "--context", "--host", "--log-level", "--tlscacert", "--tlscert", "--tlskey")
DOCKER_BOOL_FLAGS = ("--debug", "--tls", "--tlsverify")
DOCKER_SHORTHANDS = {"c": "--context", "H": "--host", "l": "--log-level", "D": "--debug"}
BOOL_WORDS = {"1": True, "t": True, "T": True, "true": True, "TRUE": True, "True": True,
              "0": False, "f": False, "F": False, "false": False, "FALSE": False, "False": False}  # Go's ParseBool
PLUGIN_ENV = "DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND"  # set by the docker CLI when it runs a plugin


def split_argv(argv: Sequence[str], plugin_mode: bool = True) -> Tuple[List[DockerFlag], List[str]]:
    """Split `[DOCKER GLOBAL OPTIONS] [reroll] [OUR ARGS]` into docker's global options and ours.

    The docker CLI runs a plugin as `docker-reroll [globals] reroll [args]`; standalone use (`docker-reroll web`)
    has no `reroll` word, so there a first word `reroll` is a service of that name. Values of global options are
    consumed with their flag, so `--context reroll` is a value.
    """
    flags: List[DockerFlag] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            if name in DOCKER_BOOL_FLAGS:
                flags.append((name, _bool_value(name, value) if eq else True))
                i += 1
            elif name in DOCKER_VALUE_FLAGS:
                if not eq:
                    value = _next_value(argv, i, name)
                flags.append((name, value))
                i += 1 if eq else 2
            else:
                break
        elif len(word) > 1 and word[0] == "-" and word[1] in DOCKER_SHORTHANDS:
            i = _shorthand_group(argv, i, flags)
        else:
            break
    rest = list(argv[i:])
    if plugin_mode and rest and rest[0] == PLUGIN_NAME:
        rest = rest[1:]
    return flags, rest


def _shorthand_group(argv: Sequence[str], i: int, flags: List[DockerFlag]) -> int:
    """One word of docker shorthands, as pflag reads it: `-D`, `-D=false`, `-cprod`, `-c=prod`, `-c prod`,
    `-Dc prod`. Returns the index of the next word."""
    shorts = argv[i][1:]
    while shorts:
        letter, shorts = shorts[0], shorts[1:]
        name = DOCKER_SHORTHANDS.get(letter)
        if name is None:
            raise UsageError(f"unknown shorthand flag: '{letter}' in {argv[i]}")
        if name in DOCKER_BOOL_FLAGS:
            if shorts.startswith("=") and len(shorts) > 1:
                flags.append((name, _bool_value(name, shorts[1:])))
                return i + 1
            flags.append((name, True))
            continue
        if shorts.startswith("=") and len(shorts) > 1:
            flags.append((name, shorts[1:]))
        elif shorts:
            flags.append((name, shorts))
        else:
            flags.append((name, _next_value(argv, i, f"-{letter}")))
            return i + 2
        return i + 1
    return i + 1


def _next_value(argv: Sequence[str], i: int, flag: str) -> str:
    if i + 1 >= len(argv):
        raise UsageError(f"a value is required for '{flag}' but none was supplied")
    return argv[i + 1]


def _bool_value(flag: str, value: str) -> bool:
    if value not in BOOL_WORDS:
        raise UsageError(f"invalid value '{value}' for '{flag}': expected true or false")
    return BOOL_WORDS[value]


def parse_args(args: Sequence[str]) -> Options:
    """Parse our own arguments the way clap does: no abbreviations, `--opt=value`, `-fvalue`, `--`."""
    options = Options()
    seen: set = set()
    positionals: List[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if word == "--":
            positionals += args[i:]
            break
        if not word.startswith("-") or word == "-":
            positionals.append(word)
            continue
        name, value = split_option_word(word)
        option = OPTIONS_BY_NAME.get(name)
        if option is None:
            raise UsageError(f"unexpected argument '{name}' found{_misplaced_global_hint(args, i - 1)}")
        if option.kind == "flag":
            if value is not None:
                raise UsageError(f"unexpected value '{value}' for '{option.display}' found; no more were expected")
            options.set(option.dest, True, FROM_COMMAND_LINE)
            if option.dest in ("help", "version"):
                return options  # like clap: help and version win over everything else
            continue
        if value is None:
            if i >= len(args) or _is_our_option(args[i]):  # `--pre-stop-cmd $UNSET --dry-run`: not a value
                raise UsageError(f"a value is required for '{option.display}' but none was supplied")
            value = args[i]
            i += 1
        if option.kind == "texts":
            getattr(options, option.dest).append(value)
            continue
        if option.kind == "scale":
            service, count = _scale(option, value)
            options.scale[service] = count
            options.sources["scale"] = FROM_COMMAND_LINE
            continue
        if option.dest in seen:
            raise UsageError(f"the argument '{option.display}' cannot be used multiple times")
        seen.add(option.dest)
        options.set(option.dest, _read(option, value, READERS[option.kind]), FROM_COMMAND_LINE)
    if options.pre_stop_cmd is not None and options.pre_stop_exec is not None:
        raise UsageError("the argument '--pre-stop-cmd <PRE_STOP_CMD>' cannot be used with "
                         "'--pre-stop-exec <PRE_STOP_EXEC>'")
    if options.all and positionals:
        raise UsageError(f"the argument '--all' cannot be used with '<SERVICE>...' (found '{positionals[0]}')")
    if not positionals and not options.all:
        raise UsageError("the following required arguments were not provided:\n  <SERVICE>...")
    for service in positionals:
        if not service.strip():
            raise UsageError("invalid value '' for '<SERVICE>...': a service name cannot be empty")
        if positionals.count(service) > 1:
            raise UsageError(f"invalid value '{service}' for '<SERVICE>...': the service is named twice")
    options.services = positionals
    for service, count in options.scale.items():
        if positionals and service not in positionals:
            raise UsageError(f"invalid value '{service}={count}' for '--scale <SERVICE=NUM>': "
                             f"'{service}' is not among the services deployed")
    return options


def _is_our_option(word: str) -> bool:
    return word.startswith("-") and split_option_word(word)[0] in OPTIONS_BY_NAME


def _misplaced_global_hint(args: Sequence[str], at: int) -> str:
    """Docker's own options after `reroll` (`docker reroll web --context prod`) belong before it: say so, with the
    command they were meant for."""
    name = split_option_word(args[at])[0]
    if name not in DOCKER_VALUE_FLAGS + DOCKER_BOOL_FLAGS and name[1:] not in DOCKER_SHORTHANDS:
        return ""
    hint = "; docker's global options go before `reroll`"
    try:
        _, rest = split_argv(args[at:], plugin_mode=False)
    except UsageError:  # `docker reroll web --context`: no value to show it with
        return hint
    import shlex  # only on this error's path: --help and the metadata stay fast

    moved = list(args[at:len(args) - len(rest)])
    return f"{hint}: {shlex.join(['docker', *moved, PLUGIN_NAME, *args[:at], *rest])}"


def _read(option: Option, value: str, parse: Callable[[str], object]) -> object:
    try:
        return parse(value)
    except ValueError as error:
        raise UsageError(f"invalid value '{_shown(value)}' for '{option.display}': {error}") from None


def _shown(value: str) -> str:
    """A value as an error message quotes it: a runaway one (a number of 5,000 digits) cut to its start."""
    return value if len(value) <= 60 else f"{value[:40]}... ({len(value)} characters)"


def _scale(option: Option, value: str) -> Tuple[str, int]:
    service, eq, count = value.partition("=")
    try:
        number = parse_count(count) if service and eq else None
    except ValueError:
        number = None
    if number is None:
        raise UsageError(f"invalid value '{_shown(value)}' for '{option.display}': expected SERVICE=NUM, NUM from "
                         f"1 to {MAX_COUNT}")
    return service, number


def usage_error_text(message: str) -> str:
    return f"error: {message}\n\n{USAGE}\n\nFor more information, try '--help'.\n"


def parse_command_line(argv: Sequence[str], plugin_mode: bool = True,
                       environ: Optional[Mapping[str, str]] = None) -> Options:
    environ = {} if environ is None else environ
    docker_globals, args = split_argv(argv, plugin_mode)
    options = parse_args(args)
    if options.help or options.version:
        return options  # nothing else matters, and a bad environment must not hide the help
    options.read_environment(environ)
    options.docker_globals = docker_globals
    options.args = list(args)
    return options


def main(argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    if argv[:1] == [METADATA_COMMAND]:
        _print(sys.stdout, METADATA_JSON + "\n")
        return EXIT_OK
    if argv[:1] == [COMPLETE_COMMAND]:
        from docker_reroll.complete import complete  # deferred, like the deploy machinery

        words = argv[2:] if argv[1:2] == [PLUGIN_NAME] else argv[1:]
        _print(sys.stdout, complete(words, environ))
        return EXIT_OK
    try:
        options = parse_command_line(argv, plugin_mode=PLUGIN_ENV in environ, environ=environ)
    except UsageError as error:
        _print(sys.stderr, usage_error_text(str(error)))
        return EXIT_USAGE
    if options.help:
        _print(sys.stdout, render_help())
        return EXIT_OK
    if options.version:
        _print(sys.stdout, f"docker-reroll {__version__}\n")
        return EXIT_OK
    from docker_reroll.runner import run  # deferred: the deploy machinery is not needed for help or metadata

    return run(options, environ=environ)


def _print(stream: TextIO, text: str) -> None:
    """Write all of it now. An output that is gone (closed, full, a reader that left) loses the text, never the exit
    code: what it could not take is settled at the end (console_main)."""
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass


def console_main() -> None:
    """The process's entry point, whichever way it was installed (the plugin file, `python -m docker_reroll`, pip's
    `docker-reroll` script): main's exit code, whatever state stdout and stderr are in."""
    _open_standard_streams()
    try:
        code = main()
    finally:
        _settle_standard_streams()
    sys.exit(code)


def _open_standard_streams() -> None:
    """A closed stdin, stdout or stderr (`>&-`) becomes /dev/null. Python would have no sys.stdout to write to, and
    the next file or pipe we open would take the descriptor, where children and our own output would then go."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))


def _settle_standard_streams() -> None:
    """Flush stdout and stderr now, and point one that cannot take the rest (a reader that left, a full disk) at
    /dev/null: the interpreter flushes them again as it exits, and a failure there makes the exit code 120."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, stream.fileno())
                os.close(null)
            except (OSError, ValueError):
                pass

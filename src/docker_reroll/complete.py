"""Shell completion through the docker CLI: `docker __complete reroll ARGS...` runs `docker-reroll __complete
reroll ARGS...` and expects cobra's answer, as compose gives it: one candidate per line (`name<TAB>description`),
then `:<directive>`. Docker's own completion scripts (`docker completion bash|zsh|fish`) do the rest.

The last word is the one being completed (possibly empty). Candidates: our options with their help text, the values
of `--progress`, and the services of the compose project that the options typed so far select (through
`docker compose config --services`, so compose's rules for files, profiles and names apply).
"""

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from docker_reroll.errors import RerollError
from docker_reroll.options import FLAGS, OPTIONS_BY_NAME, PROGRESS_MODES, split_option_word
from docker_reroll.processes import CommandRunner

# cobra's ShellCompDirective bits
DEFAULT = 0  # the shell may complete file names
NO_SPACE = 2
NO_FILE = 4
DIRECTORIES = 16  # FilterDirs: directories only

COMPLETION_TIMEOUT = 5.0  # a shell waiting on a <TAB> must not hang on a slow engine
PROJECT_FLAGS = ("--file", "--env-file", "--project-name", "--project-directory", "--profile")
PROGRESS_HELP = {"auto": "tty on a terminal, else plain", "tty": "a live view that redraws in place",
                 "plain": "timestamped lines", "json": "one JSON object per event", "quiet": "errors and the summary"}


def complete(words: Sequence[str], environ: Mapping[str, str]) -> str:
    typed, current = list(words[:-1]), (words[-1] if words else "")
    candidates, directive = candidates_for(typed, current, environ)
    return "".join(f"{c}\n" for c in candidates) + f":{directive}\n"


def candidates_for(typed: List[str], current: str, environ: Mapping[str, str]) -> Tuple[List[str], int]:
    value_of = _awaiting_value(typed)
    if value_of is None and current.startswith("--") and "=" in current:
        value_of, _, current = current.partition("=")
        prefix = value_of + "="
    else:
        prefix = ""
    if value_of is not None:
        return _values(value_of, current, prefix, typed, environ)
    if current.startswith("-"):
        return [f"{name}\t{text}" for name, text in option_help().items() if name.startswith(current)], NO_FILE
    given = set(_positionals(typed))
    services = [s for s in project_services(typed, environ) if s.startswith(current) and s not in given]
    return services, NO_FILE


def _values(flag: str, current: str, prefix: str, typed: List[str],
            environ: Mapping[str, str]) -> Tuple[List[str], int]:
    option = OPTIONS_BY_NAME.get(flag)
    if option is None:
        return [], NO_FILE
    if option.dest == "progress":
        return [f"{prefix}{m}\t{PROGRESS_HELP[m]}" for m in PROGRESS_MODES if m.startswith(current)], NO_FILE
    if option.dest in ("files", "env_files"):
        return [], DEFAULT  # file names: the shell's own completion
    if option.dest == "project_directory":
        return [], DIRECTORIES
    if option.dest == "scale":  # SERVICE=NUM: the service, then the number is the user's
        services = [f"{prefix}{s}=" for s in project_services(typed, environ) if s.startswith(current)]
        return services, NO_SPACE | NO_FILE
    if option.dest == "profiles":
        return [f"{prefix}{p}" for p in _compose(typed, environ, "config", "--profiles") if p.startswith(current)], \
            NO_FILE
    return [], NO_FILE  # a number, a command: nothing to suggest


def option_help() -> Dict[str, str]:
    """Each option's long and short name -> its help text, from the option table."""
    return {name: option.help for option in FLAGS for name in (option.long, option.short) if name}


def _awaiting_value(typed: List[str]) -> Optional[str]:
    """The option whose value is being typed (`--progress <TAB>`), if the last word typed is one that takes one."""
    if not typed:
        return None
    option = OPTIONS_BY_NAME.get(typed[-1])  # never a value itself: an option's value is not one of our options
    if option is None or option.kind == "flag":
        return None
    return option.long


def _positionals(typed: List[str]) -> List[str]:
    words, i = [], 0
    while i < len(typed):
        option = OPTIONS_BY_NAME.get(typed[i])
        if option is not None and option.kind != "flag":
            i += 2
            continue
        if not typed[i].startswith("-"):
            words.append(typed[i])
        i += 1
    return words


def project_args(typed: List[str]) -> List[str]:
    """The project-selecting options among the words typed so far, as compose takes them."""
    args: List[str] = []
    i = 0
    while i < len(typed):
        word = typed[i]
        name, given = split_option_word(word) if word.startswith("-") else (word, None)
        value = given or ""
        option = OPTIONS_BY_NAME.get(name)
        if option is not None and option.long in PROJECT_FLAGS:
            if given is None:
                if i + 1 >= len(typed):
                    break
                value = typed[i + 1]
                i += 1
            args += [option.long, value]
        i += 1
    return args


def project_services(typed: List[str], environ: Mapping[str, str]) -> List[str]:
    return _compose(typed, environ, "config", "--services")


def _compose(typed: List[str], environ: Mapping[str, str], *command: str) -> List[str]:
    from docker_reroll.engine import docker_binary

    docker = docker_binary(environ)
    try:
        result = CommandRunner().run([docker, "compose", *project_args(typed), *command], check=False,
                                     timeout=COMPLETION_TIMEOUT, env=environ)
    except RerollError:
        return []
    return sorted(result.stdout.split()) if result.returncode == 0 else []

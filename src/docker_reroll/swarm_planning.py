"""What a Swarm service's update will change and with which settings, decided before it starts: the tag resolved
again (or the new image), the environment's changes (by name, never a value), the replica count, the update
settings the user set (the service's own for the rest), and how long the update may take. The deploy sends this
plan to Swarm; the dry run prints it."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from docker_reroll.errors import RefusedError
from docker_reroll.model import SwarmService, UpdateConfig, digest_of, without_resolved_digest
from docker_reroll.options import FROM_COMMAND_LINE, FROM_DEFAULT, Options
from docker_reroll.vocabulary import Outcome

IN_PROGRESS = ("updating", "rollback_started")

# How a Swarm update can end other than completed, in the words of the summary (`failed (paused)`) and its outcome
ROLLED_BACK = Outcome.ROLLED_BACK
PAUSED, ROLLBACK_PAUSED, ROLLING_BACK, UPDATING = Outcome.PAUSED, Outcome.ROLLBACK_PAUSED, Outcome.ROLLING_BACK, \
    Outcome.UPDATING
SWARM_ENDINGS = (PAUSED, ROLLBACK_PAUSED, ROLLING_BACK, UPDATING)


# What a Swarm service's update cannot do: these settings are refused rather than ignored
NO_SWARM_MEANING = (("--pre-stop-cmd", "pre_stop_cmd"), ("--pre-stop-exec", "pre_stop_exec"),
                    ("--pre-stop-wait-until-unhealthy", "pre_stop_wait_until_unhealthy"), ("--wait", "wait"),
                    ("--wait-after-unhealthy", "wait_after_unhealthy"), ("--drain-time", "drain_time"),
                    ("--drain-timeout", "drain_timeout"))


def check_swarm_options(service: str, options: Options) -> None:
    """Refuse (exit 3, nothing changed) every setting, from the command line or a label, that a Swarm service's
    update has no place for: it would otherwise be ignored without a word."""
    given = [(flag, name) for flag, name in NO_SWARM_MEANING if options.source(name) != FROM_DEFAULT]
    if not given:
        return
    said = ", ".join(f"{flag} ({options.source(name)})" for flag, name in given)
    why = "Swarm starts, health-checks and stops the tasks itself"
    if any(name.startswith("pre_stop") for _, name in given):
        why = "Swarm stops an old task as soon as its replacement runs, with no hook before that. Give the " \
              "service a health check that fails on SIGTERM and keeps serving for a moment (a lame duck) and a " \
              "stop_grace_period longer than that, so the proxy drops it first"
    raise RefusedError(f"service '{service}' is a Swarm service: {said} cannot apply to it ({why})")


# docker service update's flag, the Options attribute that sets it, the UpdateConfig field it changes, its name
UPDATE_SETTINGS = (("--update-parallelism", "max_surge", "parallelism", "parallelism"),
                   ("--update-delay", "update_delay", "delay", "delay"),
                   ("--update-monitor", "update_monitor", "monitor", "monitor"),
                   ("--update-failure-action", "failure_action", "failure_action", "on failure"),
                   ("--update-max-failure-ratio", "max_failure_ratio", "max_failure_ratio", "max failure ratio"),
                   ("--update-order", "update_order", "order", "order"))
FROM_SERVICE = "the service's own"

# Variables the docker CLI (and the ssh or credential helper it may run) reads for itself: a service's value for one
# of these cannot pass through the CLI's environment without changing what the CLI does, so it goes on the command
# line (and is still never printed).
CLI_OWN_VARIABLES = {"PATH", "HOME", "USER", "TMPDIR", "SHELL", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                     "ALL_PROXY", "SSH_AUTH_SOCK", "SSH_ASKPASS", "GODEBUG", "GOGC", "GOMAXPROCS", "GOMEMLIMIT",
                     "GOTRACEBACK"}
CLI_OWN_PREFIXES = ("DOCKER_", "LD_", "XDG_", "OTEL_")
HIDDEN = "(value hidden)"


def read_by_the_cli(key: str) -> bool:
    return key.upper() in CLI_OWN_VARIABLES or key.upper().startswith(CLI_OWN_PREFIXES)


@dataclass
class SwarmPlan:
    args: List[str]  # for docker service update
    shown_args: List[str]  # the same with every environment value hidden
    env: Dict[str, str] = field(default_factory=dict)  # the values of `--env-add KEY`, for the CLI's environment
    changes: List[str] = field(default_factory=list)  # in words, never a value of the environment
    settings: List[Tuple[str, str, str]] = field(default_factory=list)  # (setting, value, source) that apply
    warnings: List[str] = field(default_factory=list)
    deadline: float = 0.0  # seconds the whole update may take before it is rolled back
    replicas: int = 1


def plan_swarm_update(options: Options, current: SwarmService, image: Optional[str],
                      env: Optional[Mapping[str, str]], replicas: Optional[int] = None) -> SwarmPlan:
    """The update: the tag resolved again (or the new image), the environment's changes, the replica count of
    --scale, and the update settings the user set (command line, deploy.update_config, labels); every setting the
    user left alone is the service's own, not sent, and still counts for how long the update may take."""
    plan = SwarmPlan([], [])
    applied = _update_settings(options, current.update_config, plan)
    _image(plan, current, image)
    if replicas is not None and current.replicas is not None and replicas != current.replicas:
        plan.args += ["--replicas", str(replicas)]
        plan.changes.append(f"replicas {current.replicas} -> {replicas}")
    plan.shown_args = list(plan.args)
    if env is not None:
        _environment(plan, current.env, env)
    plan.args.append("--force")  # the tasks are replaced even when nothing else changed (a tag rebuilt here)
    plan.shown_args.append("--force")
    plan.replicas = replicas if replicas is not None else current.replicas or 1
    parallelism = int(applied.parallelism)
    batches = -(-plan.replicas // parallelism) if parallelism else 1
    # Swarm starts the next batch once a batch's tasks run (healthy) and the delay passed; after the last, it watches
    # them for the monitor period before it says completed. Stop-first stops each old task first.
    stopping = current.stop_grace if applied.order == "stop-first" else 0.0
    plan.deadline = batches * (options.healthcheck_timeout + applied.delay + stopping) + applied.monitor
    if applied.order == "stop-first":
        plan.warnings.append(
            f"{current.name} updates stop-first ({_source_of(plan, 'order')}): Swarm stops each old task before its "
            "replacement starts, so fewer tasks serve meanwhile (none, with one replica); set "
            "deploy.update_config.order: start-first for zero downtime")
    return plan


def _update_settings(options: Options, own: UpdateConfig, plan: SwarmPlan) -> UpdateConfig:
    """Each update setting the user set is sent; the others are the service's own. Returns what will apply."""
    applied: Dict[str, Any] = {}
    for flag, name, key, shown in UPDATE_SETTINGS:
        given = _given(options, name)
        if given is None:
            value, source = getattr(own, key), FROM_SERVICE
        else:
            value, source = given
            plan.args += [flag, _flag_value(key, value)]
        applied[key] = value
        plan.settings.append((shown, _shown_value(key, value), source))
    return UpdateConfig(**applied)


def _given(options: Options, name: str) -> Optional[Tuple[Any, str]]:
    """The value and source of an update setting the user set, or None. The monitor is also
    --wait-after-healthy's (the command line's over the compose file's update_config, over its label); a zero
    monitor is no setting, as Swarm itself ignores it."""
    if name == "update_monitor":
        sources = [(options.wait_after_healthy, options.source("wait_after_healthy")),
                   (options.update_monitor, options.source("update_monitor"))]
        ranked = sorted((s for s in sources if s[1] != FROM_DEFAULT and s[0] > 0),
                        key=lambda s: (s[1] != FROM_COMMAND_LINE, not s[1].startswith("deploy.")))
        return ranked[0] if ranked else None
    if options.source(name) == FROM_DEFAULT:
        return None
    value = getattr(options, name)
    return (value or 0, options.source(name)) if name == "max_surge" else (value, options.source(name))


def _flag_value(key: str, value: Any) -> str:
    return f"{value:g}s" if key in ("delay", "monitor") else f"{value:g}" if isinstance(value, float) else str(value)


def _shown_value(key: str, value: Any) -> str:
    return "all at once" if key == "parallelism" and not value else _flag_value(key, value)


def _source_of(plan: SwarmPlan, setting: str) -> str:
    return next(source for shown, _, source in plan.settings if shown == setting)


def _image(plan: SwarmPlan, current: SwarmService, image: Optional[str]) -> None:
    """Always `--image`: the tag the service names is resolved to its digest again, as `docker stack deploy`
    does (a re-pushed `:latest` reaches the tasks); a new image replaces it. A tag no registry knows (an image
    built on this host) stays a tag, with the CLI's warning."""
    tag = without_resolved_digest(current.image)
    target = image or tag
    plan.args += ["--image", target]
    if target != tag:
        plan.changes.append(f"image {tag} -> {target}")
    elif digest_of(current.image):
        plan.changes.append(f"image {tag} resolved again on its registry (it runs {digest_of(current.image)[:19]})")
    else:
        plan.changes.append(f"image {tag} (the same tag: the tasks are replaced)")


def _environment(plan: SwarmPlan, current: Sequence[str], env: Mapping[str, str]) -> None:
    """`--env-add KEY` (the value through the CLI's environment) and `--env-rm KEY`; said by name only."""
    have = dict(item.partition("=")[::2] for item in current)
    for key, value in sorted(env.items()):
        if have.get(key) == value:
            continue
        if read_by_the_cli(key):
            plan.args += ["--env-add", f"{key}={value}"]
            plan.shown_args += ["--env-add", f"{key}={HIDDEN}"]
        else:
            plan.args += ["--env-add", key]
            plan.shown_args += ["--env-add", key]
            plan.env[key] = value
        plan.changes.append(f"{key} {'changed' if key in have else 'added'}")
    for key in sorted(set(have) - set(env)):
        plan.args += ["--env-rm", key]
        plan.shown_args += ["--env-rm", key]
        plan.changes.append(f"{key} removed")


def describe_update(plan: SwarmPlan) -> str:
    return ", ".join(f"{shown} {value} ({source})" for shown, value, source in plan.settings)


def refusal_for(name: str, current: Optional[SwarmService], scale: Optional[int]) -> str:
    """Why a service cannot be deployed as asked, or ""."""
    if current is None:
        return f"no Swarm service {name}"
    if scale is not None and current.replicas is None:
        return f"--scale: {name} is a global service (one task per node), it has no replica count"
    return ""

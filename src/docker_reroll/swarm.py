"""A Swarm stack service, deployed with Swarm's own rolling update: docker-reroll decides what the update changes and
follows it; Swarm starts, health-checks, stops and, on a failure, rolls back the tasks, with the service's own update
settings wherever the user set none.

    find NAME_web -> docker service update --detach (the tag resolved again, --force) -> follow UpdateStatus and the
                     tasks until completed (exit 0), rolled back, paused or still rolling back (exit 1)
                     interrupt before completed: docker service rollback, wait for it (exit 128+signal)

Swarm keeps the update's state itself, so there is no journal: an update in progress (`updating`) when a run
starts means another deploy is at work (exit 4). The engine lock still keeps two docker-reroll runs apart.
"""

import json
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from docker_reroll.engine import Docker, compose_message
from docker_reroll.errors import DeployFailed, Interrupted, LockedError, RefusedError, RerollError
from docker_reroll.interrupts import Interrupts, signal_name
from docker_reroll.lock import EngineLock
from docker_reroll.options import FROM_COMMAND_LINE, FROM_DEFAULT, Options
from docker_reroll.progress import Progress

STACK_LABEL = "com.docker.stack.namespace"
FOLLOW_SECONDS = 0.5  # how often the update's state is read: Swarm itself moves in seconds
ROLLBACK_EXTRA_SECONDS = 60.0
IN_PROGRESS = ("updating", "rollback_started")
NANOSECONDS = 1e9
DEFAULT_STOP_GRACE = 10.0  # the engine's, for a task that sets no stop_grace_period

# How a Swarm update can end other than completed, in the words of the summary (`failed (paused)`) and its outcome
ROLLED_BACK, PAUSED, ROLLBACK_PAUSED = "rolled back", "paused", "rollback paused"
ROLLING_BACK, UPDATING = "rollback in progress", "update in progress"  # when we stopped following
SWARM_ENDINGS = (PAUSED, ROLLBACK_PAUSED, ROLLING_BACK, UPDATING)


@dataclass(frozen=True)
class UpdateConfig:
    """A service's rolling-update settings (`Spec.UpdateConfig`); the defaults are Swarm's, which the engine fills
    in for a service created without any."""

    parallelism: int = 1  # 0: all at once
    delay: float = 0.0
    monitor: float = 5.0
    failure_action: str = "pause"
    max_failure_ratio: float = 0.0
    order: str = "stop-first"

    @classmethod
    def from_inspect(cls, config: Optional[Mapping[str, Any]]) -> "UpdateConfig":
        if not config:
            return cls()
        return cls(parallelism=int(config.get("Parallelism") or 0),
                   delay=int(config.get("Delay") or 0) / NANOSECONDS,
                   monitor=int(config.get("Monitor") or 0) / NANOSECONDS or cls.monitor,  # 0: Swarm's 5 s
                   failure_action=config.get("FailureAction") or cls.failure_action,
                   max_failure_ratio=float(config.get("MaxFailureRatio") or 0.0),
                   order=config.get("Order") or cls.order)


@dataclass
class SwarmService:
    """What `docker service inspect` says about a service, as far as a deploy cares."""

    id: str
    name: str
    image: str  # as the spec has it: `app:latest@sha256:...` once Swarm resolved the tag on a registry
    env: List[str]
    replicas: Optional[int]  # None: a global service (one task per node)
    update_state: str = ""  # UpdateStatus.State: updating, completed, paused, rollback_started, rollback_completed
    update_started: str = ""
    update_message: str = ""
    stack: str = ""
    version: int = 0
    update_config: UpdateConfig = UpdateConfig()
    stop_grace: float = DEFAULT_STOP_GRACE

    @classmethod
    def from_inspect(cls, item: Dict[str, Any]) -> "SwarmService":
        spec = item.get("Spec") or {}
        container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
        replicated = (spec.get("Mode") or {}).get("Replicated")
        status = item.get("UpdateStatus") or {}
        grace = container.get("StopGracePeriod")
        return cls(id=item.get("ID") or "", name=spec.get("Name") or "", image=container.get("Image") or "",
                   env=[str(e) for e in container.get("Env") or []],
                   replicas=int(replicated.get("Replicas") or 0) if replicated is not None else None,
                   update_state=status.get("State") or "", update_started=status.get("StartedAt") or "",
                   update_message=status.get("Message") or "",
                   stack=(spec.get("Labels") or {}).get(STACK_LABEL) or "",
                   version=int((item.get("Version") or {}).get("Index") or 0),
                   update_config=UpdateConfig.from_inspect(spec.get("UpdateConfig")),
                   stop_grace=int(grace) / NANOSECONDS if grace is not None else DEFAULT_STOP_GRACE)


def without_resolved_digest(image: str) -> str:
    """A spec's `name:tag@sha256:...` as the tag it was resolved from, so that the registry is asked again; an image
    pinned by digest alone (`name@sha256:...`) stays as it is."""
    name, at, _ = image.partition("@")
    return name if at and ":" in name.rsplit("/", 1)[-1] else image


def digest_of(image: str) -> str:
    return image.partition("@")[2]


# Swarm's task states in the container states the progress modes know (scheduled and not yet started: created)
TASK_STATES = {"starting": "starting", "running": "running", "shutdown": "removed", "remove": "removed",
               "complete": "exited", "failed": "exited", "rejected": "exited", "orphaned": "exited"}


@dataclass
class Task:
    id: str
    slot: str
    image: str
    desired: str  # running, shutdown
    state: str  # new, pending, assigned, preparing, starting, running, shutdown, failed, rejected, complete
    error: str = ""
    container_id: str = ""
    service_version: int = 0
    reference: str = ""  # the image as the task's spec has it, with the digest Swarm pinned


def parse_tasks(text: str) -> List[Task]:
    """`docker inspect` of a service's tasks."""
    tasks = []
    for item in json.loads(text or "[]"):
        spec = (item.get("Spec") or {}).get("ContainerSpec") or {}
        status = item.get("Status") or {}
        tasks.append(Task(
            id=item.get("ID") or "", slot=str(item.get("Slot") or ""),
            image=(spec.get("Image") or "").split("@", 1)[0], desired=item.get("DesiredState") or "",
            state=status.get("State") or "", error=status.get("Err") or "",
            container_id=(status.get("ContainerStatus") or {}).get("ContainerID") or "",
            service_version=int((item.get("Version") or {}).get("Index") or 0), reference=spec.get("Image") or "",
        ))
    return tasks


class SwarmEngine:
    """The Swarm calls, through the same `docker` (and flags) as every other call."""

    def __init__(self, docker: Docker) -> None:
        self.docker = docker

    def is_manager(self) -> bool:
        result = self.docker.run("info", "--format", "{{json .Swarm.ControlAvailable}}", check=False)
        return result.returncode == 0 and result.stdout.strip() == "true"

    def stack_services(self, service: str) -> List[str]:
        """The names of every stack's service called `service` (`STACK_service`)."""
        result = self.docker.run("service", "ls", "--filter", f"label={STACK_LABEL}", "--format",
                                 "{{.Name}}", check=False)
        candidates = [name for name in result.stdout.split() if name.endswith(f"_{service}")]
        if not candidates:
            return []
        # by the stack's own label: `shop_admin_web` is stack shop's `admin_web`, not stack shop_admin's `web`
        result = self.docker.run("service", "inspect", "--format",
                                 f'{{{{.Spec.Name}}}} {{{{index .Spec.Labels "{STACK_LABEL}"}}}}', *candidates,
                                 check=False)
        named = (line.split() for line in result.stdout.splitlines())
        return sorted(fields[0] for fields in named if len(fields) == 2 and fields[0] == f"{fields[1]}_{service}")

    def inspect(self, name: str) -> Optional[SwarmService]:
        result = self.docker.run("service", "inspect", name, check=False)
        if result.returncode != 0:
            return None
        return SwarmService.from_inspect(json.loads(result.stdout)[0])

    def tasks(self, name: str) -> List[Task]:
        ids = self.docker.run("service", "ps", "--quiet", "--no-trunc", name, check=False).stdout.split()
        if not ids:
            return []
        result = self.docker.run("inspect", "--type", "task", *ids, check=False)
        return parse_tasks(result.stdout) if result.stdout.strip().startswith("[") else []

    def update(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> List[str]:
        """`docker service update`; `env`: the values of `--env-add KEY`, which the docker CLI takes from its own
        environment (so no value shows in a process list). Returns the CLI's warnings, one per paragraph."""
        result = self.docker.run("service", "update", "--detach", *args, name, check=False,
                                 env={**self.docker.environ, **env})
        if result.returncode != 0:
            raise DeployFailed(f"docker service update {name}: {compose_message(result.stderr)}")
        return [" ".join(part.split()) for part in result.stderr.split("\n\n") if part.strip()]

    def rollback(self, name: str) -> str:
        result = self.docker.run("service", "rollback", "--detach", name, check=False)
        return "" if result.returncode == 0 else compose_message(result.stderr)


# What a Swarm service's update cannot do: these settings are refused rather than ignored
NO_SWARM_MEANING = (("--pre-stop-cmd", "pre_stop_cmd"), ("--pre-stop-exec", "pre_stop_exec"),
                    ("--pre-stop-wait-until-unhealthy", "pre_stop_wait_until_unhealthy"), ("--wait", "wait"),
                    ("--wait-after-unhealthy", "wait_after_unhealthy"), ("--drain-time", "drain_time"))


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


class SwarmDeployment:
    """One Swarm service updated by Swarm and followed to its end."""

    def __init__(self, options: Options, name: str, service: str, engine: SwarmEngine, progress: Progress,
                 interrupts: Interrupts, lock: EngineLock, new_config: "tuple[Optional[str], Optional[Dict[str, str]]]"
                 ) -> None:
        self.options = options
        self.name = name
        self.service = service
        self.engine = engine
        self.progress = progress
        self.interrupts = interrupts
        self.lock = lock
        self.new_image, self.new_env = new_config
        self.old_tasks: List[Task] = []
        self.new_tasks: List[Task] = []
        self.final_state = ""  # UpdateStatus.State when the run stopped following
        self._history: Set[str] = set()
        self.consistent = True  # Swarm keeps the state: a service it updates or rolls back is never left half-way

    def check(self) -> SwarmService:
        """The service as it is, unless it is no Swarm service, cannot take the options, or Swarm is updating it
        already."""
        self.progress.phase("prepare", self.service)
        current = self.engine.inspect(self.name)
        refusal = refusal_for(self.name, current, self.options.scale.get(self.service))
        if refusal:
            raise RefusedError(refusal)
        assert current is not None
        if current.update_state in IN_PROGRESS:
            raise LockedError(f"Swarm is already updating {self.name} ({current.update_state} since "
                              f"{current.update_started}): wait for it, or `docker service rollback {self.name}`")
        return current

    def run(self, current: SwarmService) -> None:
        plan = plan_swarm_update(self.options, current, self.new_image, self.new_env,
                                 self.options.scale.get(self.service))
        tasks = self.engine.tasks(self.name)
        self.old_tasks = [t for t in tasks if t.desired == "running"]
        self._history = {t.id for t in tasks} - {t.id for t in self.old_tasks}  # earlier deploys' tasks: not shown
        before = {t.id for t in self.old_tasks}
        self.progress.info(f"updating Swarm service {self.name} ({current.replicas} replica(s)): "
                           f"{'; '.join(plan.changes)}")
        self.progress.info(f"update settings of {self.name}: {describe_update(plan)}; followed for up to "
                           f"{plan.deadline:g}s")
        for warning in plan.warnings:
            self.progress.warn(warning)
        self._check_interrupt()
        self.lock.verify()
        self.progress.phase("update", self.service)
        for warning in self.engine.update(self.name, plan.args, plan.env):
            self.progress.warn(f"docker service update: {warning}")
        self._say_resolved(current)
        state, asked = self._follow(current, before, plan.deadline)
        self.final_state = state
        if state == "completed":
            self.new_tasks = [t for t in self.engine.tasks(self.name) if t.desired == "running"]
            self.progress.info(f"deployed {self.name}: {len(self.new_tasks)} task(s) running the new config")
            return
        self._failed(state, asked)

    def _say_resolved(self, before: SwarmService) -> None:
        after = self.engine.inspect(self.name)
        if after is not None and digest_of(after.image) and after.image != before.image:
            self.progress.info(f"{self.name} now runs {after.image}")

    def _follow(self, before: SwarmService, old_ids: set, deadline_seconds: float) -> Tuple[str, str]:
        """Until Swarm says completed, rolled back or paused, or we stop following a roll-back: Swarm's state, and
        why we asked for a roll-back ("interrupted", "timeout", or "")."""
        deadline = time.monotonic() + deadline_seconds
        asked_rollback = ""
        while True:
            state = self.engine.inspect(self.name)
            self._show_tasks(old_ids)
            ours = state is not None and (state.update_started and state.update_started != before.update_started or
                                          state.version > before.version and state.update_state)
            now = state.update_state if state is not None and ours else ""
            if now in ("completed", "rollback_completed", "paused", "rollback_paused"):
                return now, asked_rollback
            if not asked_rollback:
                signum = self.interrupts.first_signal
                if signum is not None:
                    asked_rollback = "interrupted"
                    self._ask_rollback(f"interrupted by {signal_name(signum)}", now)
                    deadline = time.monotonic() + ROLLBACK_EXTRA_SECONDS + deadline_seconds
                elif time.monotonic() > deadline:
                    asked_rollback = "timeout"
                    self._ask_rollback(f"not complete after {deadline_seconds:g}s", now)
                    deadline = time.monotonic() + ROLLBACK_EXTRA_SECONDS + deadline_seconds
            elif self.interrupts.count > 1 or time.monotonic() > deadline:
                return now or "updating", asked_rollback
            self.interrupts.sleep(FOLLOW_SECONDS, interrupts_seen=self.interrupts.count)

    def _ask_rollback(self, why: str, state: str) -> None:
        self.progress.phase("roll back", self.service)
        if state == "rollback_started":  # Swarm is at it already (failure_action rollback): wait for it
            self.progress.warn(f"{why}: Swarm is rolling {self.name} back already; waiting for it")
            return
        self.progress.warn(f"{why}: asking Swarm to roll {self.name} back (docker service rollback)")
        failure = self.engine.rollback(self.name)
        if failure:
            self.progress.warn(f"docker service rollback: {failure}")

    def _show_tasks(self, old_ids: set) -> None:
        for task in self.engine.tasks(self.name):
            if task.id in self._history:
                continue
            role = "old" if task.id in old_ids else "new"
            if role == "new" and task.desired != "running" and task.state in ("new", "pending"):
                continue
            state = TASK_STATES.get(task.state, "created")
            self.progress.container(self.service, task.id, f"{self.name}.{task.slot}.{task.id[:6]}", role, state,
                                    task.image)

    def _failed(self, state: str, asked: str) -> None:
        """Raise what Swarm reports: rolled back (the old config serves), paused, its roll-back paused, or its
        roll-back still in progress when we stopped following (the service's state says the rest)."""
        old_ids = {t.id for t in self.old_tasks}
        errors = sorted({f"{self.name}.{t.slot}: {t.error}" for t in self.engine.tasks(self.name)
                         if t.error and t.id not in self._history and t.id not in old_ids})
        for line in errors:
            self.progress.error(line)
        current = self.engine.inspect(self.name)
        message = (current.update_message if current else "") or state
        ending = {"rollback_completed": ROLLED_BACK, "paused": PAUSED, "rollback_paused": ROLLBACK_PAUSED,
                  "rollback_started": ROLLING_BACK}.get(state, UPDATING)
        said = {
            ROLLED_BACK: f"Swarm rolled {self.name} back: {message}",
            PAUSED: f"Swarm paused the update of {self.name}: {message}; some tasks may run the new config: "
                    f"`docker service rollback {self.name}`, or fix it and deploy again",
            ROLLBACK_PAUSED: f"Swarm paused the roll-back of {self.name}: {message}; some tasks may still run the "
                             f"new config: see `docker service ps {self.name}`",
            ROLLING_BACK: f"stopped following {self.name} while Swarm rolls it back ({message}); Swarm goes on by "
                          f"itself: see `docker service ps {self.name}`",
            UPDATING: f"stopped following {self.name} while Swarm still updates it ({message}); see "
                      f"`docker service ps {self.name}`",
        }[ending] + (f" ({'; '.join(errors)})" if errors and ending == ROLLED_BACK else "")
        signum = self.interrupts.first_signal
        if signum is not None:
            stopped = "interrupted twice" if self.interrupts.count > 1 and ending in (ROLLING_BACK, UPDATING) \
                else f"interrupted by {signal_name(signum)}"
            error: RerollError = Interrupted(f"{stopped}: {said}", signum, rolled_back=ending == ROLLED_BACK)
        else:
            error = DeployFailed(("not complete in time: " if asked == "timeout" else "") + said)
            error.rolled_back = ending == ROLLED_BACK
        error.service_state = "" if ending == ROLLED_BACK else ending
        raise error

    def _check_interrupt(self) -> None:
        signum = self.interrupts.first_signal
        if signum is not None:
            raise Interrupted(f"interrupted by {signal_name(signum)} before the update began", signum)


def refusal_for(name: str, current: Optional[SwarmService], scale: Optional[int]) -> str:
    """Why a service cannot be deployed as asked, or ""."""
    if current is None:
        return f"no Swarm service {name}"
    if scale is not None and current.replicas is None:
        return f"--scale: {name} is a global service (one task per node), it has no replica count"
    return ""

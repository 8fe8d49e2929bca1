"""The decisions, without a daemon: what a deploy will do with a service's containers, how to drain them, in which
batches to replace them, and what a release of several services does with each. Pure functions over what the engine
reported; deploy.py and release.py carry them out.
"""

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from docker_reroll.errors import RefusedError, UsageError
from docker_reroll.model import Container, Health, Journal, ProjectConfig, ServiceSpec, Status, gone, stale
from docker_reroll.options import LABEL_PREFIX, SETTING_LABELS, Options


@dataclass(frozen=True)
class Plan:
    """What a deploy will do, decided from the service's containers before anything changes."""

    stale: List[Container]  # exited, dead or never started: removed first, not counted as serving
    old: List[Container]  # the containers serving now: retired once the new ones are ready
    replicas: int  # how many containers the service has after the deploy

    @property
    def first_start(self) -> bool:
        return not self.old

    @property
    def scale_to(self) -> int:
        return len(self.old) + self.replicas

    @property
    def paused(self) -> List[Container]:
        """Old containers a user paused: compose cannot scale the service while one is paused."""
        return [c for c in self.old if c.status == Status.PAUSED]


def plan_deploy(containers: Sequence[Container], journal: Optional[Journal] = None,
                scale: Optional[int] = None) -> Plan:
    """Split the service's containers into stale ones and the rest (running, restarting, paused: each a replica
    to replace). The replica count after the deploy is --scale's if given, else what a journal from an
    interrupted deploy says the service had before that deploy began, else the count of the rest."""
    old = [c for c in containers if not stale(c)]
    replicas = scale if scale is not None else journal.replicas if journal else len(old)
    return Plan(stale=[c for c in containers if stale(c)], old=sorted(old, key=lambda c: c.number),
                replicas=replicas)


def replica_target(scale: Optional[int], journal: Optional[Journal], wanted: Optional[int],
                   running: int) -> Optional[int]:
    """The replica count to ask plan_deploy for: --scale, else (without a journal, which knows better) the compose
    file's deploy.replicas/scale when it differs from what runs; None: as many as run."""
    if scale is None and journal is None and wanted is not None and running and wanted != running:
        return wanted
    return scale


def check_history(service: str, old: Sequence[Container], journal: Optional[Journal],
                  scale: Optional[int]) -> None:
    """Refuse to guess the replica count when the containers and the journal disagree; --scale settles it.

    Without a journal, containers of two configs mean an earlier deploy was cut short and its journal lost (a
    prune): counting them all would keep the service doubled. With one, more containers than its deploy could
    have added mean the service was changed by hand since. Fewer than its target is what a deploy killed during its
    scale-up (or paused between batches) leaves: the next run finishes it."""
    if scale is not None:
        return
    retry = f"say how many it should have: docker reroll {service} --scale {service}=N"
    if journal is None:
        configs: Dict[str, List[Container]] = {}
        for container in old:
            if container.config_hash:
                configs.setdefault(container.config_hash, []).append(container)
        if len(configs) > 1:
            groups = "; ".join(names(group) for group in configs.values())
            raise RefusedError(
                f"{service} runs containers of {len(configs)} configs ({groups}) and no deploy journal says how "
                f"many it had: an earlier deploy may have been cut short and its journal lost; {retry}")
        return
    if not journal.containers:
        return
    # An interrupted deploy starts at most `replicas` new containers (fewer if it was cut short), and a roll-back
    # across batches makes at most one old-config container again for each old one it retired.
    added = [c for c in old if c.id[:12] not in journal.containers]
    retired = [i for i in journal.containers if i not in {c.id[:12] for c in old}]
    if len(added) > journal.replicas + len(retired):
        raise RefusedError(
            f"the journal of an interrupted deploy says it took {service} from {len(journal.containers)} "
            f"container(s) ({', '.join(journal.containers)}) to {journal.replicas}, but now it runs {len(old)} "
            f"({', '.join(c.short_id for c in old)}), more than that deploy could have started: it was changed by "
            f"hand since; {retry}")


def cannot_run_twice(spec: ServiceSpec) -> Optional[Tuple[str, str]]:
    """Why two containers of the service cannot run side by side (so it cannot be rolled), and what to do; or
    None."""
    if spec.container_name:
        return (f"it sets container_name '{spec.container_name}'",
                "two of its containers cannot run side by side; remove container_name")
    if spec.network_mode == "host":
        return ("it uses network_mode: host",
                "the new and old containers would fight over the same ports; use a bridge network behind a proxy")
    if spec.fixed_host_ports:
        return (f"it publishes fixed host port(s) {', '.join(spec.fixed_host_ports)}",
                "a new container cannot bind them while the old one runs; put a proxy in front or publish a range")
    return None


def check_exists(project: ProjectConfig, service: str, profile_services: Sequence[str]) -> ServiceSpec:
    """Refuse a service the project does not define (or its profiles disable), before anything is touched."""
    spec = project.spec(service)
    if spec is None:
        if service in profile_services:
            raise RefusedError(f"service '{service}' is disabled by its profiles: enable it with --profile")
        defined = ", ".join(sorted(project.services)) or "none"
        raise RefusedError(f"no such service: '{service}' (defined services: {defined})")
    return spec


ROLL, RECREATE, SKIP = "roll", "recreate", "skip"
STRATEGY_LABEL = "docker-reroll.strategy"  # `recreate`: never run two (a database); left to compose
STRATEGIES = (ROLL, RECREATE)
# Every `docker-reroll.*` label the tool reads: the settings, and how a release treats the service.
KNOWN_LABELS = tuple(sorted((*SETTING_LABELS, STRATEGY_LABEL)))


@dataclass(frozen=True)
class Step:
    """What a release does with one service, and why."""

    service: str
    action: str  # ROLL, RECREATE or SKIP
    reason: str
    warnings: Tuple[str, ...] = ()  # said with the plan, before anything changes


@dataclass(frozen=True)
class ReleaseFacts:
    """What the engine says about a project, for planning a release: each service's containers (any state), the
    config hash compose would give it now (v2 only), and the image id each image name resolves to now (None: not
    on the engine)."""

    containers: Mapping[str, Sequence[Container]]
    hashes: Mapping[str, str]
    image_ids: Mapping[str, Optional[str]]


def plan_release(project: ProjectConfig, facts: ReleaseFacts, scale: Mapping[str, int],
                 named: Optional[Sequence[str]] = None, profile_services: Sequence[str] = ()) -> List[Step]:
    """What to do with each service: the `named` ones in the order given, else (`--all`) the whole project in
    dependency order. A service marked `docker-reroll.strategy=recreate` is left to compose however it was
    selected; a named service is otherwise rolled (refused if it cannot run twice), while `--all` skips what runs
    the current config and leaves to compose what cannot be rolled. Every refusal comes before anything changes."""
    if named is not None:
        for service in named:
            check_exists(project, service, profile_services)
    steps = []
    for service in named if named is not None else dependency_order(project):
        spec = project.services[service]
        running = [c for c in facts.containers.get(service, ()) if not stale(c)]
        strategy, warnings = service_strategy(spec, running)
        wanted = scale.get(service, spec.replicas)
        if named is not None:
            step = _named_step(spec, running, strategy, wanted)
        else:
            step = _whole_project_step(spec, running, strategy, wanted, facts)
        steps.append(Step(step.service, step.action, step.reason, tuple(warnings) + unknown_labels(spec)))
    return steps


def _named_step(spec: ServiceSpec, running: Sequence[Container], strategy: str, wanted: Optional[int]) -> Step:
    if wanted == 0:
        return _scaled_to_zero(spec, running)
    if strategy == RECREATE:
        return Step(spec.name, RECREATE, f"marked {STRATEGY_LABEL}=recreate: compose recreates it if it changed "
                                         "(stop, then start)")
    reason = cannot_run_twice(spec)
    if reason:
        raise RefusedError(f"service '{spec.name}' cannot be rolled: {reason[0]}: {reason[1]}")
    return Step(spec.name, ROLL, "named on the command line")


def _whole_project_step(spec: ServiceSpec, running: Sequence[Container], strategy: str, wanted: Optional[int],
                        facts: ReleaseFacts) -> Step:
    """`--all`: the project as `docker compose up -d` would leave it, without downtime where that is possible."""
    if wanted == 0:
        return _scaled_to_zero(spec, running)
    change = what_changed(spec, running, facts, wanted)
    if change is None:
        return Step(spec.name, SKIP, f"its {len(running)} container(s) run the current config and image")
    held_back = _left_to_compose(spec, running, strategy)
    if held_back:
        return Step(spec.name, RECREATE, f"{change}; {held_back}")
    return Step(spec.name, ROLL, change)


def what_changed(spec: ServiceSpec, running: Sequence[Container], facts: ReleaseFacts,
                 wanted: Optional[int]) -> Optional[str]:
    """Why `docker compose up -d` would change the service (None: it would not): what compose itself compares,
    the config hash and the image the service's image name resolves to now (a pulled or rebuilt tag), and the
    replica count."""
    current = facts.hashes.get(spec.name)
    if current is None:
        return "compose v1 cannot tell whether its config changed"
    if not running:
        return "no container of it runs"
    stale = [c for c in running if c.config_hash != current]
    if stale:
        return f"its config changed ({len(stale)} of {len(running)} container(s) on an older one)"
    moved = [c for c in running if c.image and facts.image_ids.get(c.image, c.image_id) != c.image_id]
    if moved:
        image = moved[0].image
        now = facts.image_ids.get(image)
        where = f"now {_short_image_id(now)}" if now else "not on the engine: compose would pull or build it"
        return (f"its image changed: {image} is {where}, {len(moved)} of {len(running)} container(s) run "
                f"{_short_image_id(moved[0].image_id)}")
    if wanted is not None and wanted != len(running):
        return f"{len(running)} container(s) run, {wanted} wanted"
    return None


def _short_image_id(image_id: Optional[str]) -> str:
    return (image_id or "").replace("sha256:", "")[:12] or "unknown"


def _scaled_to_zero(spec: ServiceSpec, running: Sequence[Container]) -> Step:
    """`deploy.replicas: 0` (or `scale: 0`) in the file: compose's own `up` takes the service down to none."""
    if not running:
        return Step(spec.name, SKIP, f"{spec.replicas_key} is 0 and none of its containers runs")
    return Step(spec.name, RECREATE, f"{spec.replicas_key} is 0: compose stops its {len(running)} container(s)")


def _left_to_compose(spec: ServiceSpec, running: Sequence[Container], strategy: str) -> Optional[str]:
    if strategy == RECREATE:
        return f"marked {STRATEGY_LABEL}=recreate: recreated by compose"
    reason = cannot_run_twice(spec)
    if reason:
        return f"cannot be rolled, {reason[0]}: recreated by compose"
    if not running:
        return "started by compose"
    return None


def service_strategy(spec: ServiceSpec, running: Sequence[Container]) -> Tuple[str, List[str]]:
    """Roll or recreate, from the service's `docker-reroll.strategy` label, and what to say about it. Compose v1
    cannot show the file's labels: then the label its running containers carry (from the file they were made
    from) decides, and the plan says so."""
    if spec.known:
        value = spec.labels.get(STRATEGY_LABEL, ROLL)
        if value not in STRATEGIES:
            raise UsageError(f"invalid value '{value}' for label {STRATEGY_LABEL} of service '{spec.name}': "
                             f"expected {' or '.join(STRATEGIES)}")
        return value, []
    marked = sorted({c.labels.get(STRATEGY_LABEL, ROLL) for c in running})
    if RECREATE in marked:
        return RECREATE, [f"{spec.name}: compose v1 cannot show the compose file's labels; its running "
                          f"containers are marked {STRATEGY_LABEL}=recreate, so compose recreates it"]
    return ROLL, [f"{spec.name}: compose v1 cannot show the compose file's labels, so {STRATEGY_LABEL} is "
                  f"unknown; {'its running containers carry none' if running else 'none of its containers runs'}: "
                  "it is rolled. Mark a service that must never run twice on its containers, or use compose v2"]


def unknown_labels(spec: ServiceSpec) -> Tuple[str, ...]:
    """A warning for each `docker-reroll.*` label the tool does not know, naming the closest known one: a
    misspelled setting would otherwise be dropped without a word."""
    import difflib

    warnings = []
    for label in sorted(spec.labels):
        if label.startswith(LABEL_PREFIX) and label not in KNOWN_LABELS:
            suffixes = [known[len(LABEL_PREFIX):] for known in KNOWN_LABELS]  # the shared prefix says nothing
            close = difflib.get_close_matches(label[len(LABEL_PREFIX):], suffixes, n=1)
            hint = f"did you mean {LABEL_PREFIX}{close[0]}?" if close else f"known labels: {', '.join(KNOWN_LABELS)}"
            warnings.append(f"{spec.name}: unknown label {label}, ignored; {hint}")
    return tuple(warnings)


def dependency_order(project: ProjectConfig) -> List[str]:
    """Services after those they depend on (depends_on), otherwise by name."""
    order: List[str] = []
    placed = set()

    def place(service: str, path: Sequence[str]) -> None:
        if service in placed or service not in project.services:
            return
        if service in path:
            raise RefusedError(f"depends_on forms a cycle: {' -> '.join([*path, service])}")
        for dependency in project.services[service].depends_on:
            place(dependency, [*path, service])
        placed.add(service)
        order.append(service)

    for service in sorted(project.services):
        place(service, [])
    return order


@dataclass(frozen=True)
class Drain:
    """How to take containers out of a proxy's pool before they are stopped.

    Each drained container keeps running until `floor` seconds after its pre-stop command finished and, if it is
    in `wait_unhealthy`, until Docker reports it unhealthy, whichever comes later; then `pause` seconds more."""

    containers: List[Container]  # the ones to drain
    pre_stop: bool  # run --pre-stop-cmd for them
    wait_unhealthy: List[Container]  # healthy now: wait until Docker calls these unhealthy
    floor: float  # --drain-time: the proxy's time to see the failing check, however soon Docker reports it
    pause: float  # then wait this long (--wait-after-unhealthy)
    notes: List[str]  # said before the drain (info)
    warnings: List[str]

    @property
    def draining(self) -> bool:
        return bool(self.containers)


NO_DRAIN = Drain([], False, [], 0.0, 0.0, [], [])


def plan_drain(containers: Sequence[Container], options: Options, rolling_back: bool) -> Drain:
    """Old containers at the end of a deploy are drained, and so are new ones on a roll-back: a proxy may already
    route to them (HAProxy puts servers it learns from DNS in service before their first check, and its own check
    need not agree with Docker's, so even an `unhealthy` one may be in its pool). Gone and never-started
    containers need no drain.

    Only a container that is healthy now is waited for until unhealthy: one already unhealthy has nothing left to
    report, and one still `starting` has never been healthy, so within its start period Docker cannot report it
    unhealthy at all; those get the pre-stop command and the floor only. On a roll-back without a pre-stop command
    nothing would make a container fail its check, so there is nothing to drain."""
    drained = [c for c in containers if not gone(c) and c.status != Status.CREATED]
    if not drained or not (options.pre_stop or options.pre_stop_wait_until_unhealthy):
        return NO_DRAIN
    if rolling_back and not options.pre_stop:
        return NO_DRAIN
    wait: List[Container] = []
    notes: List[str] = []
    warnings: List[str] = []
    floor = options.drain_time
    if options.pre_stop_wait_until_unhealthy:
        wait = [c for c in drained if c.health == Health.HEALTHY]
        never = [c for c in drained if c.health == Health.STARTING]
        if never:
            notes.append(f"{names(never)} never turned healthy, so Docker cannot report "
                         f"{'it' if len(never) == 1 else 'them'} unhealthy: drained for --drain-time only")
        if not options.pre_stop and not any(c.has_healthcheck for c in drained):
            warnings.append("--pre-stop-wait-until-unhealthy: the containers have no health check, "
                            "so there is nothing to wait for")
    return Drain(drained, options.pre_stop, wait, floor, options.wait_after_unhealthy, notes, warnings)


def shown_pre_stop(options: Options, container: Container) -> str:
    """The pre-stop command for one container as the user would type it: --pre-stop-exec through docker exec,
    --pre-stop-cmd with {id} filled in."""
    if options.pre_stop_exec:
        return f"docker exec {container.short_id} {options.pre_stop_exec}"
    return pre_stop_command(options.pre_stop_cmd or "", container.id)


def pre_stop_command(template: str, container_id: str) -> str:
    """Only `{id}`, a hex id from the engine, is put into the user's shell command."""
    if not all(ch in "0123456789abcdef" for ch in container_id):
        raise ValueError(f"not a container id: {container_id!r}")
    return template.replace("{id}", container_id)




@dataclass(frozen=True)
class Batch:
    """One step of a rolling update: start this many new containers, then retire this many old ones."""

    start: int
    retire: int


def plan_batches(old: int, replicas: int, max_surge: Optional[int]) -> List[Batch]:
    """Replace `old` containers by `replicas` new ones, at most `max_surge` new at a time (None: all at once, the
    classic doubling). Each batch retires as many old containers as it started, and the last one retires whatever
    old is left: so the service never has fewer ready containers than it had, except on purpose at the very end of
    a scale-down."""
    surge = replicas if not max_surge or max_surge >= replicas else max_surge
    batches: List[Batch] = []
    started, left = 0, old
    while started < replicas or not batches:
        count = min(surge, replicas - started)
        started += count
        retire = left if started >= replicas else min(count, left)
        left -= retire
        batches.append(Batch(count, retire))
    return batches


def describe_batches(options: Options, count: int) -> str:
    """The rolling update in words, for the deploy and its dry run alike."""
    return (f"rolling update in {count} batches of up to {options.max_surge} new container(s) "
            f"({options.source('max_surge')})"
            + (f", {options.update_delay:g}s between batches" if options.update_delay else "")
            + (f", each monitored {options.update_monitor:g}s" if options.update_monitor else "")
            + f"; on a failure: {options.failure_action}")


def names(containers: Sequence[Container]) -> str:
    return ", ".join(c.name for c in containers) or "none"


def describe_states(containers: Sequence[Container]) -> str:
    return ", ".join(f"{c.name} {c.health or c.status}" for c in containers) or "none"


def describe(containers: Sequence[Container]) -> str:
    return ", ".join(f"{c.name} ({c.short_id})" for c in containers) or "none"



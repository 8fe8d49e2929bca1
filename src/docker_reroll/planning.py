"""What a deploy will do with one service, decided before anything changes: which containers are old and which
stale, the replica count it ends with, the batches, the drain, and what a failure in a later batch does. Pure
functions over what the engine reported (`ServiceFacts`): `plan_service` gives the `ServicePlan` that the deploy
carries out (deploy.py) and the dry run prints (rendering.py), so the two cannot disagree.
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from docker_reroll.errors import RefusedError
from docker_reroll.model import Container, Health, Journal, ServiceSpec, Status, gone, stale
from docker_reroll.options import FROM_DEFAULT, HEALTH_CHECK_DRAIN, OPTIONS, Options
from docker_reroll.proxy import Route
from docker_reroll.vocabulary import Level


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




# ---------------------------------------------------------------------------------------------- one service


@dataclass(frozen=True)
class ServiceFacts:
    """What the engine says about a service, for its plan: its containers (any state, one-off runs excluded), the
    journal an interrupted deploy left, whether its new containers will have a health check (None: the image is
    not on the engine yet), and what a clone of an old container could not carry (asked of the engine only when
    a roll-back across batches would need one)."""

    containers: Sequence[Container]
    journal: Optional[Journal] = None
    new_healthcheck: Optional[bool] = None
    unrestorable: Callable[[Container], List[str]] = lambda container: []


@dataclass(frozen=True)
class ServicePlan:
    """What a deploy of one service will do, and what it says before the first change."""

    service: str
    options: Options  # the service's own: the command line over its labels and deploy.update_config
    stale: List[Container]  # exited, dead or never started: removed first
    old: List[Container]  # serving now: retired once the new ones are ready
    replicas: int  # the count it ends with
    journal: Optional[Journal]
    batches: List[Batch]
    drain: Drain  # of the old containers, as they are now
    new_healthcheck: Optional[bool]
    messages: List[Tuple[Level, str]] = field(default_factory=list)  # said before the first change, in order
    route: Optional[Route] = None  # proxy mode: how the proxy routes to the service

    @property
    def first_start(self) -> bool:
        return not self.old

    @property
    def paused(self) -> List[Container]:
        """Old containers a user paused: compose cannot scale the service while one is paused."""
        return [c for c in self.old if c.status == Status.PAUSED]


def plan_service(service: str, spec: Optional[ServiceSpec], options: Options, facts: ServiceFacts,
                 route: Optional[Route] = None) -> ServicePlan:
    """The replica count after the deploy: --scale, else an interrupted deploy's journal, else the compose file's
    deploy.replicas/scale when it differs from what runs, else what runs; then the batches, the drain, and the
    failure action that can really be kept. Raises RefusedError where the deploy would be refused."""
    messages: List[Tuple[Level, str]] = []
    scale = options.scale.get(service)
    running = len([c for c in facts.containers if not stale(c)])
    wanted = spec.replicas if spec is not None else None
    target = replica_target(scale, facts.journal, wanted, running)
    if target is not None and target != scale:
        messages.append((Level.INFO, f"the compose file sets {service} to {wanted} container(s) "
                                     f"({spec.replicas_key if spec else ''}); {running} run now: the deploy ends "
                                     f"with {wanted}"))
    plan = plan_deploy(facts.containers, facts.journal, target)
    check_history(service, plan.old, facts.journal, scale)
    if facts.journal is not None:
        messages.append((Level.WARN, f"an earlier deploy of {service} was interrupted; finishing it: the service "
                                     f"goes to {plan.replicas} container(s), all on the current config"))
    if scale is not None and scale != len(plan.old):
        messages.append((Level.INFO, f"--scale: {service} goes from {len(plan.old)} to {scale} container(s)"))
    if plan.first_start:
        batches = [Batch(plan.replicas, 0)]
    else:
        batches = plan_batches(len(plan.old), plan.replicas, options.max_surge)
    if len(batches) > 1:
        options = _keepable_failure_action(spec, options, plan.old[0], facts, messages)
        messages.append((Level.INFO, describe_batches(options, len(batches))))
        if options.update_order == "stop-first":
            messages.append((Level.INFO, "deploy.update_config.order is stop-first: treated as start-first (new "
                                         "containers start before old ones stop: that is what this tool is for)"))
    drain = plan_drain(plan.old, options, rolling_back=False)
    if route is not None:
        drain = NO_DRAIN  # the proxy is told directly: no health check to fail, no floor
        messages += _proxy_messages(route, options)
    return ServicePlan(service, options, plan.stale, plan.old, plan.replicas, facts.journal, batches, drain,
                       facts.new_healthcheck, messages, route)


def _proxy_messages(route: Route, options: Options) -> List[Tuple[Level, str]]:
    hosts = f", host {', '.join(route.hosts)}" if route.hosts else ""
    closing = "" if route.client_keepalive else ", client keep-alive off"
    check = f"GET {route.health_path}" if route.health_path else "a connect"
    said = [(Level.INFO, f"proxy mode: {route.proxy} ({route.kind}) routes {route.service} ({route.protocol} on port "
                         f"{route.listen}{hosts}{closing}) to port {route.port}; new containers get connections once "
                         f"their health check and the proxy's ({check}) pass, old ones are stopped once the proxy "
                         f"holds no connection to them, after {options.drain_timeout:g}s at most "
                         f"({options.source('drain_timeout')})")]
    unused = [str(o.long) for o in OPTIONS if o.drain == HEALTH_CHECK_DRAIN and options.source(o.dest) != FROM_DEFAULT]
    if unused:
        said.append((Level.WARN, f"proxy mode: {', '.join(unused)} do not apply: the proxy is switched directly "
                                 "instead of draining through the containers' health checks"))
    return said


def _keepable_failure_action(spec: Optional[ServiceSpec], options: Options, old: Container, facts: ServiceFacts,
                             messages: List[Tuple[Level, str]]) -> Options:
    """failure_action rollback across batches makes old containers again from what the engine knows of them;
    when that cannot be faithful, a rollback the user asked for is refused, and the default one becomes a pause,
    said before the first change."""
    if options.failure_action != "rollback":
        return options
    missing = list(spec.done_at_start if spec is not None else []) + facts.unrestorable(old)
    if not missing:
        return options
    why = f"the old containers use {', '.join(missing)}, which docker-reroll cannot make again by itself"
    asked = options.source("failure_action")
    if asked != FROM_DEFAULT:
        raise RefusedError(f"failure_action rollback ({asked}) across batches cannot be kept: {why}; set "
                           "failure_action: pause, or deploy all new containers at once (no batches)")
    messages.append((Level.WARN, f"failure_action rollback: {why}; a failure after the first batch pauses instead"))
    import copy

    paused = copy.copy(options)
    paused.sources = dict(options.sources)
    paused.set("failure_action", "pause", "docker-reroll (old containers cannot be made again)")
    return paused

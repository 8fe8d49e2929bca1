"""The rolling deploy: what to do, in which order, and what a failure or an interrupt means at each step.

    discover -> scale up (N -> 2N) -> wait until ready -> | pre-stop -> drain -> retire the old containers
                 ^-- failure or interrupt: roll back ---^ | interrupt: finish (old ones may already be draining)

Before the first pre-stop command nothing old has been touched, so any failure or interrupt rolls back: the new
containers are retired and the old ones keep serving. After it, the old containers may already be leaving the
proxy's pool, so the only safe way out is forward. Decisions are pure functions at the top; the `Deployment`
class carries them out through `Docker`.
"""

import functools
import shlex
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Dict, List, Optional, Sequence

from docker_reroll.engine import Container, Docker, ProjectConfig, ServiceSpec
from docker_reroll.errors import (
    DeployFailed,
    DockerCommandError,
    Incomplete,
    Interrupted,
    LockLost,
    RefusedError,
    first_line,
)
from docker_reroll.interrupts import Interrupts, signal_name
from docker_reroll.lock import EngineLock, Journal
from docker_reroll.processes import concurrently
from docker_reroll.progress import Progress
from docker_reroll.settings import Options
from docker_reroll.watch import (
    REMOVED,
    ContainerWatch,
    Outcome,
    WaitStats,
    all_healthy,
    all_unhealthy,
    gone,
    serving,
    still_serving,
)

LOG_TAIL_LINES = 20
ROLLBACK_SETTLE_SECONDS = 0.5  # after an interrupted compose: let creations already sent to the engine land
STALE_STATUSES = ("exited", "dead", "created")
DEFAULT_STOP_TIMEOUT = 10  # the engine's grace period for a container that does not set one
LAST_LOOKS_LEAD = 0.25  # the checks before a stop start this long before the drain ends (they take 30-200 ms)
PRE_STOP_MIN_TIMEOUT = 10.0  # a pre-stop command may run for --healthcheck-timeout seconds, and at least this long


class Phase(Enum):
    PREPARE = "prepare"
    SCALE_UP = "scale up"
    WAIT_READY = "wait until ready"
    PRE_STOP = "pre-stop"
    DRAIN = "drain"
    RETIRE = "retire"


ROLLBACK_PHASES = (Phase.PREPARE, Phase.SCALE_UP, Phase.WAIT_READY)


def rolls_back(phase: Phase) -> bool:
    """Can a failure or interrupt in this phase still go back to the old containers untouched?"""
    return phase in ROLLBACK_PHASES


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
        return [c for c in self.old if c.status == "paused"]


def plan_deploy(containers: Sequence[Container], journal: Optional[Journal] = None,
                scale: Optional[int] = None) -> Plan:
    """Split the service's containers into stale ones and the rest (running, restarting, paused: each a replica
    to replace). The replica count after the deploy is --scale's if given, else what a journal from an
    interrupted deploy says the service had before that deploy began, else the count of the rest."""
    stale = [c for c in containers if c.status in STALE_STATUSES]
    old = [c for c in containers if c.status not in STALE_STATUSES]
    replicas = scale or (journal.replicas if journal else len(old))
    return Plan(stale=stale, old=sorted(old, key=lambda c: c.number), replicas=replicas)


def check_history(service: str, old: Sequence[Container], journal: Optional[Journal],
                  scale: Optional[int]) -> None:
    """Refuse to guess the replica count when the containers and the journal disagree; --scale settles it.

    Without a journal, containers of two configs mean an earlier deploy was cut short and its journal lost (a
    prune): counting them all would keep the service doubled. With one, more containers than its deploy could
    have added, or fewer than it recorded, mean the service was changed by hand since."""
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
    added = [c for c in old if c.id[:12] not in journal.containers]
    if len(old) < journal.replicas or len(added) > journal.replicas:
        raise RefusedError(
            f"the journal of an interrupted deploy says {service} had {journal.replicas} container(s) "
            f"({', '.join(journal.containers)}), but now it runs {len(old)} ({', '.join(c.short_id for c in old)}): "
            f"it was changed by hand since; {retry}")


def check_service(project: ProjectConfig, service: str, profile_services: Sequence[str]) -> None:
    """Refuse a service that cannot be rolled, before anything is touched."""
    spec = project.service
    if spec is None:
        if service in profile_services:
            raise RefusedError(f"service '{service}' is disabled by its profiles: enable it with --profile")
        defined = ", ".join(project.services) or "none"
        raise RefusedError(f"no such service: '{service}' (defined services: {defined})")
    if spec.container_name:
        raise RefusedError(
            f"service '{service}' sets container_name '{spec.container_name}': two of its containers cannot run "
            "side by side, so it cannot be rolled; remove container_name"
        )
    if spec.network_mode == "host":
        raise RefusedError(f"service '{service}' uses network_mode: host: the new and old containers would fight "
                           "over the same ports; use a bridge network behind a proxy")
    if spec.fixed_host_ports:
        raise RefusedError(
            f"service '{service}' publishes fixed host port(s) {', '.join(spec.fixed_host_ports)}: a new container "
            "cannot bind them while the old one runs; put a proxy in front or publish a port range"
        )


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
    drained = [c for c in containers if not gone(c) and c.status != "created"]
    if not drained or not (options.pre_stop_cmd or options.pre_stop_wait_until_unhealthy):
        return NO_DRAIN
    if rolling_back and not options.pre_stop_cmd:
        return NO_DRAIN
    wait: List[Container] = []
    notes: List[str] = []
    warnings: List[str] = []
    floor = options.drain_time
    if options.pre_stop_wait_until_unhealthy:
        wait = [c for c in drained if c.health == "healthy"]
        never = [c for c in drained if c.health == "starting"]
        if never:
            notes.append(f"{names(never)} never turned healthy, so Docker cannot report "
                         f"{'it' if len(never) == 1 else 'them'} unhealthy: drained for --drain-time only")
        if not options.pre_stop_cmd and not any(c.has_healthcheck for c in drained):
            warnings.append("--pre-stop-wait-until-unhealthy: the containers have no health check, "
                            "so there is nothing to wait for")
    return Drain(drained, bool(options.pre_stop_cmd), wait, floor, options.wait_after_unhealthy, notes, warnings)


def pre_stop_command(template: str, container_id: str) -> str:
    """Only `{id}`, a hex id from the engine, is put into the user's shell command."""
    if not all(ch in "0123456789abcdef" for ch in container_id):
        raise ValueError(f"not a container id: {container_id!r}")
    return template.replace("{id}", container_id)


@dataclass
class DeployReport:
    """The outcome, for the summary line and the benchmark."""

    old: List[str] = field(default_factory=list)
    new: List[str] = field(default_factory=list)
    replicas: int = 0
    first_start: bool = False
    completed: bool = False  # only new containers serve
    phase_seconds: Dict[str, float] = field(default_factory=dict)


class Deployment:
    def __init__(self, options: Options, docker: Docker, progress: Progress, interrupts: Interrupts,
                 command_line: str) -> None:
        self.options = options
        self.docker = docker
        self.progress = progress
        self.interrupts = interrupts
        self.command_line = command_line
        self.service = options.service
        self.report = DeployReport()
        self._phase = Phase.PREPARE
        self._phase_started = time.monotonic()
        self.project = ""
        self.spec: Optional[ServiceSpec] = None
        self.lock: Optional[EngineLock] = None
        self.watch: Optional[ContainerWatch] = None
        self.wait_stats: Optional[WaitStats] = None
        # False while old and new containers both exist: if we die then, the lock and journal stay behind so the
        # next run knows it must finish this deploy.
        self.consistent = True

    @property
    def phase(self) -> Phase:
        return self._phase

    @phase.setter
    def phase(self, phase: Phase) -> None:
        """Enter a phase; the time spent in the one we leave goes into the report (for the benchmark)."""
        now = time.monotonic()
        spent = self.report.phase_seconds
        spent[self._phase.value] = spent.get(self._phase.value, 0.0) + now - self._phase_started
        self._phase, self._phase_started = phase, now

    # ------------------------------------------------------------------------------------------------- the story

    def run(self) -> DeployReport:
        project = self.docker.load_project(self.service)
        profile_services = self.docker.services_in_any_profile() if project.service is None else []
        check_service(project, self.service, profile_services)
        self.project = project.name
        self.spec = project.service
        self.lock = lock = EngineLock(self.docker, project.name, self.service, self.progress, self.command_line)
        lock.acquire(self.options.lock_timeout, self.interrupts)
        try:
            with ContainerWatch(self.docker, project.name, self.service, self.interrupts) as self.watch:
                self.wait_stats = self.watch.stats
                self._deploy(lock)
        except (Incomplete, LockLost):
            raise  # their messages say what to do
        except BaseException:
            if not self.consistent:
                self.progress.error(f"the deploy stopped half-way; run `docker reroll {self.service}` again to "
                                    "finish it (the lock and journal left on the engine tell it how)")
            raise
        finally:
            self.phase = self.phase  # close the time account of the last phase
            if self.consistent:  # else lock and journal stay, for the next run to finish the deploy
                # Rolled back after an interrupted deploy: the service still has that deploy's extra containers,
                # so the journal must stay to tell the next run the real replica count.
                lock.release(keep_journal=lock.journal_inherited and not self.report.completed)
        return self.report

    def _deploy(self, lock: EngineLock) -> None:
        scale = self.options.scale.get(self.service)
        plan = plan_deploy(self._service_containers(), lock.journal, scale)
        check_history(self.service, plan.old, lock.journal, scale)
        if lock.journal is not None:
            self.progress.warn(f"an earlier deploy of {self.service} was interrupted; finishing it: the service "
                               f"goes to {plan.replicas} container(s), all on the current config")
        if scale is not None and scale != len(plan.old):
            self.progress.info(f"--scale: {self.service} goes from {len(plan.old)} to {scale} container(s)")
        if plan.stale:
            self.progress.info(f"removing stopped containers: {names(plan.stale)}")
            failures = self.docker.remove([c.id for c in plan.stale])
            if failures:  # compose would count it toward --scale, and it could outlive the deploy
                raise DeployFailed(f"could not remove stopped containers: {'; '.join(failures)}")
        self._check_interrupt()
        self.report.first_start = plan.first_start
        self.report.old = [c.id for c in plan.old]
        self.report.replicas = plan.replicas
        if plan.first_start:
            self.progress.info(f"no running container of {self.service}: starting it")
        else:
            lock.write_journal(plan.replicas, [c.id for c in plan.old])
            self.progress.info(f"old containers: {describe(plan.old)}")
        self.consistent = False
        new = self._roll_out(plan)
        self.report.new = [c.id for c in new]
        self.phase = Phase.PRE_STOP
        self._retire(plan.old, rolling_back=False, replacements=new)
        self.consistent = True
        self.report.completed = True
        self.progress.info(f"deployed {self.service}: {len(new)} container(s) serving: {describe(new)}")

    def _service_containers(self) -> List[Container]:
        """Every container compose made for the service (one-off `run` containers excluded), inspected through
        the watch, whose events keep them current from then on."""
        assert self.watch is not None
        ids = self.docker.service_container_ids(self.project, self.service)
        return [c for c in self.watch.refresh(ids) if not c.oneoff and c.status != REMOVED]

    def _roll_out(self, plan: Plan) -> List[Container]:
        """Scale up and wait for the new containers; on any failure or interrupt, roll back and raise."""
        new: List[Container] = []
        try:
            self.phase = Phase.SCALE_UP
            self._unpause(plan.paused)
            new = self._scale_up(plan)
            self._check_interrupt()
            self.progress.info(f"new containers: {describe(new)}")
            self.phase = Phase.WAIT_READY
            self._wait_ready(new)
            self._check_interrupt()
            return new
        except LockLost:
            raise  # the service is another run's now: nothing may be rolled back
        except Exception as error:  # whatever went wrong, nothing old was touched yet: go back
            self._roll_back(plan, error)
            self.consistent = True
            raise

    def _unpause(self, paused: List[Container]) -> None:
        """Compose starts every container of the service that is not running, and the engine refuses to start
        a paused one: resume them first (they are replaced with the others, or paused again on a roll-back)."""
        if not paused:
            return
        self.progress.info(f"unpausing {names(paused)}: compose cannot scale a service with a paused container; "
                           "they are replaced with the others")
        failures = self.docker.unpause([c.id for c in paused])
        if failures:
            raise DeployFailed(f"could not unpause {names(paused)}: {'; '.join(failures)}")

    def _scale_up(self, plan: Plan) -> List[Container]:
        """Have compose make the new containers; returns them, running.

        Compose starts the containers of a scaled service one after another (about 0.3 s each on a small machine),
        so when several are new it only creates them (`up --no-start`) and we start them all at once, unless the
        service uses something compose does only as it starts a container itself (hooks, inline configs and
        secrets): then compose starts them, one by one."""
        assert self.lock is not None
        done_at_start = self.spec.done_at_start if self.spec is not None else []
        start_together = not plan.first_start and plan.replicas > 1 and not done_at_start
        if not plan.first_start and plan.replicas > 1 and done_at_start:
            self.progress.info(f"compose starts the new containers itself, one by one: the service uses "
                               f"{', '.join(done_at_start)}, which compose sets up as it starts a container")
        self.lock.verify(journal=True)
        try:
            if plan.first_start:  # dependencies may not be up yet: let compose start them
                self.docker.compose_up(self.service, scale=plan.replicas or None, no_deps=False,
                                       cancel=self.interrupts.requested)
            else:
                self.progress.info(f"scaling {self.service} from {len(plan.old)} to {plan.scale_to} containers")
                self.docker.compose_up(self.service, scale=plan.scale_to, no_deps=True,
                                       cancel=self.interrupts.requested, start=not start_together)
        except DockerCommandError:
            self._check_interrupt()  # compose failed because we stopped it: that is the interrupt, not an error
            raise
        new = self._new_containers(plan)
        if not new or (not plan.first_start and len(new) != plan.replicas):
            raise DeployFailed(f"compose created {len(new)} new container(s), expected {plan.replicas}")
        if start_together:
            assert self.watch is not None
            self._start_together(new)
            # Started, their health check now shows; inspected through the watch, which then keeps them current.
            new = self.watch.refresh([c.id for c in new])
            vanished = [c for c in new if c.status == REMOVED]
            if vanished:
                raise DeployFailed(f"new container(s) vanished after starting: {names(vanished)}")
        return new

    def _start_together(self, containers: List[Container]) -> None:
        self.progress.info(f"starting {len(containers)} new containers at once")
        failures: List[str] = []

        def start(container: Container) -> None:
            try:
                result = self.docker.start(container.id)
            except DockerCommandError as error:
                failures.append(f"{container.name}: {error}")
                return
            if result.returncode != 0:
                failures.append(f"{container.name}: {first_line(result.stderr)}")

        run_concurrently(start, containers)
        if failures:
            raise DeployFailed("could not start " + "; ".join(failures))

    def _new_containers(self, plan: Plan) -> List[Container]:
        old_ids = {c.id for c in plan.old}
        return sorted((c for c in self._service_containers() if c.id not in old_ids), key=lambda c: c.number)

    def _wait_ready(self, new: List[Container]) -> None:
        assert self.watch is not None
        ids = [c.id for c in new]
        if any(c.has_healthcheck for c in new):  # the new config decides: it may add or drop a health check
            timeout = self.options.healthcheck_timeout
            self.progress.info(f"waiting up to {timeout:g}s for {len(ids)} new container(s) to be healthy")
            outcome = self.watch.wait(ids, all_healthy, timeout, interrupts_seen=0)
            self._raise_unless_done(outcome, ids, f"not healthy after {timeout:g}s")
            self.progress.info(f"{len(ids)}/{len(ids)} new container(s) healthy")
            if self.options.wait_after_healthy > 0:
                self._stay_up(ids, self.options.wait_after_healthy, "after healthy")
        else:
            self._stay_up(ids, self.options.wait, "(no health check) before checking the new containers")

    def _stay_up(self, ids: List[str], seconds: float, why: str) -> None:
        """Wait `seconds`; the new containers must keep serving all along. One that stops or turns unhealthy fails
        the deploy at once, and any interrupt (we are before the point of no return) ends the wait."""
        assert self.watch is not None
        self.progress.info(f"waiting {seconds:g}s {why}")
        outcome = self.watch.wait(ids, still_serving, seconds, interrupts_seen=0)
        if outcome.kind != "timeout":  # here the time running out is the success
            self._raise_unless_done(outcome, ids, "")
        # One last look through the engine itself, not only its events: this decides whether the old ones go.
        failed = still_serving(self.watch.refresh(ids))
        if failed is not None:
            self._raise_unless_done(failed, ids, "")

    def _raise_unless_done(self, outcome: Outcome, ids: List[str], timeout_reason: str) -> None:
        if outcome.done:
            return
        if outcome.kind == "interrupted":
            self._check_interrupt()
        self._diagnose(ids)
        raise DeployFailed(outcome.reason or timeout_reason)

    def _diagnose(self, ids: Sequence[str]) -> None:
        """What went wrong, from the engine: each failed container's last health output and its last log lines.
        Inspected now: events say a container turned unhealthy, not what its check printed."""
        assert self.watch is not None
        for container in self.watch.refresh(ids):
            if serving(container):
                continue
            state = container.health or container.status
            self.progress.error(f"{container.name} ({container.short_id}) is {state}")
            if container.health_output:
                self.progress.detail(f"last health check output of {container.name}", container.health_output)
            self.progress.detail(f"last {LOG_TAIL_LINES} log lines of {container.name}",
                                 self.docker.logs_tail(container.id, LOG_TAIL_LINES))

    def _roll_back(self, plan: Plan, cause: Exception) -> None:
        """Retire every container that is not one of the old ones; the old ones were never touched (the paused
        ones among them are paused again)."""
        self.progress.warn(f"rolling back: {cause}")
        old_ids = {c.id for c in plan.old}
        if self.phase == Phase.SCALE_UP and self.interrupts.requested():
            time.sleep(ROLLBACK_SETTLE_SECONDS)
        for _ in range(2):  # a second look catches a container the engine finished creating after compose stopped
            new = [c for c in self._service_containers() if c.id not in old_ids]
            if not new:
                break
            self._retire(new, rolling_back=True)
        if plan.paused:
            self.progress.info(f"pausing {names(plan.paused)} again, as they were")
            failures = self.docker.pause([c.id for c in plan.paused])
            if failures:
                self.progress.warn(f"could not pause them again: {'; '.join(failures)}")
        self.progress.info(f"rolled back: the old containers keep serving: {describe(plan.old)}")

    def _retire(self, containers: List[Container], rolling_back: bool,
                replacements: Sequence[Container] = ()) -> None:
        """Drain (see `plan_drain`), then stop and remove: the old containers at the end of a deploy, or the new
        ones on a roll-back. Old containers are stopped only while one of their `replacements` still serves."""
        assert self.watch is not None and self.lock is not None
        if not containers:
            return
        self.lock.verify()
        current = self.watch.known([c.id for c in containers])
        drain = plan_drain(current, self.options, rolling_back)
        for note in drain.notes:
            self.progress.info(note)
        for warning in drain.warnings:
            self.progress.warn(warning)
        # Just before the stop, the last looks: the lock is still ours, and a new container still serves.
        lock = self.lock
        last_looks: List[Callable[[], None]] = [lock.verify]
        if replacements:
            last_looks.append(lambda: self._check_replacements_serve(replacements, current))
        if drain.draining:
            self._drain(drain, rolling_back, last_looks)
        else:
            concurrently(last_looks)
        self._enter(Phase.RETIRE, rolling_back)
        self._stop_and_remove(current)

    def _drain(self, drain: Drain, rolling_back: bool, last_looks: List[Callable[[], None]]) -> None:
        """Pre-stop command, then keep the containers running through the floor and, for those that can, until
        Docker calls them unhealthy (whichever is later), then the pause. The floor counts from when the pre-stop
        commands finished: Docker may report "unhealthy" a few milliseconds after them, long before a proxy's next
        check has seen the failure, and stopping then fails requests. The `last_looks` before the stop (docker
        calls) are made during the end of the drain, so they cost it no time; it never ends before them."""
        assert self.watch is not None
        if drain.pre_stop:
            self._enter(Phase.PRE_STOP, rolling_back)
            self._run_pre_stop(drain.containers)
        floor_ends = time.monotonic() + drain.floor
        self._enter(Phase.DRAIN, rolling_back)
        waited = "them" if drain.wait_unhealthy == drain.containers else names(drain.wait_unhealthy)
        until = f" and until Docker reports {waited} unhealthy" if drain.wait_unhealthy else ""
        self.progress.info(f"draining {names(drain.containers)}: {drain.floor:g}s (--drain-time){until}")
        if drain.wait_unhealthy:
            if self.interrupts.count > 1 and not rolling_back:
                self.progress.warn("interrupted again: not waiting for the old containers to turn unhealthy")
            else:
                self._wait_unhealthy(drain.wait_unhealthy)
        # The floor holds whatever else happens: it is the proxy's reaction time, not a wait a user can skip.
        if drain.pause > 0:
            self.watch.hold(floor_ends - time.monotonic())
            self.progress.info(f"waiting {drain.pause:g}s after draining")
            self.watch.pause(drain.pause, interrupts_seen=self._further_interrupt())
            concurrently(last_looks)
        else:
            self.watch.hold(floor_ends - LAST_LOOKS_LEAD - time.monotonic())
            concurrently(last_looks)
            self.watch.hold(floor_ends - time.monotonic())

    def _check_replacements_serve(self, replacements: Sequence[Container], old: List[Container]) -> None:
        """Past the point of no return, the last moment to keep the old containers: if not one new container is
        healthy (or running, without a health check), stopping the old ones would leave nothing that can serve."""
        assert self.watch is not None
        now = self.watch.refresh([c.id for c in replacements])
        if any(serving(c) for c in now):
            return
        self._diagnose([c.id for c in now])
        raise Incomplete(
            f"none of the new containers serves any more ({describe_states(now)}): the old containers "
            f"{names(old)} were drained but are not stopped; fix the new version, then run `docker reroll "
            f"{self.service}` again to finish (it replaces all of them), or undo the pre-stop command in the old "
            "containers to send them traffic again"
        )

    def _enter(self, phase: Phase, rolling_back: bool) -> None:
        """A roll-back stays in the phase it started from: the point of no return was never passed."""
        if not rolling_back:
            self.phase = phase

    def _stop_and_remove(self, containers: List[Container]) -> None:
        ids = [c.id for c in containers if c.status != REMOVED]
        if not ids:
            return
        self.progress.info(f"stopping {names(containers)}")
        grace = max((c.stop_timeout or DEFAULT_STOP_TIMEOUT for c in containers), default=DEFAULT_STOP_TIMEOUT)
        stop = self.docker.stop(ids, grace_seconds=grace)
        if stop.returncode != 0:
            self.progress.warn(f"docker stop: {stop.stderr.strip()}")
        self.progress.info(f"removing {names(containers)}")
        failures = self.docker.remove(ids)
        if failures:
            raise DeployFailed(f"could not remove {names(containers)}: {'; '.join(failures)}")

    def _run_pre_stop(self, containers: List[Container]) -> None:
        """The pre-stop command for every container at once; a failure is a warning, as in the original tool.
        Each is bounded (see PRE_STOP_MIN_TIMEOUT), and a further interrupt ends it, with all it started."""
        template = self.options.pre_stop_cmd or ""
        timeout = max(self.options.healthcheck_timeout, PRE_STOP_MIN_TIMEOUT)
        env = self.docker.environment_for_user_commands()
        seen = self._further_interrupt()

        def one(container: Container) -> None:
            command = pre_stop_command(template, container.id)
            self.progress.info(f"running pre-stop command for {container.name}: {command}")
            try:
                result = self.docker.runner.run(["sh", "-c", command], check=False, capture=True, timeout=timeout,
                                                cancel=lambda: self.interrupts.count > seen, env=env)
            except DockerCommandError as error:
                self.progress.warn(f"pre-stop command for {container.name} could not run: {error}")
                return
            output = (result.stdout + result.stderr).strip()
            if output:
                self.progress.detail(f"pre-stop output for {container.name}", output)
            if result.ended == "timeout":
                self.progress.warn(f"pre-stop command for {container.name} ran past {timeout:g}s: ended it")
            elif result.ended == "cancelled":
                self.progress.warn(f"pre-stop command for {container.name} ended by a further interrupt")
            elif result.returncode != 0:
                self.progress.warn(f"pre-stop command for {container.name} exited with {result.returncode}")

        run_concurrently(one, containers)

    def _wait_unhealthy(self, containers: List[Container]) -> None:
        assert self.watch is not None
        timeout = self.options.healthcheck_timeout
        self.progress.info(f"waiting up to {timeout:g}s for {names(containers)} to be unhealthy")
        # A further interrupt ends this wait early: the user wants out, and stopping is all that is left.
        outcome = self.watch.wait([c.id for c in containers], all_unhealthy, timeout,
                                  interrupts_seen=self._further_interrupt())
        if outcome.kind == "timeout":
            self.progress.warn(f"still healthy after {timeout:g}s; stopping anyway")
        elif outcome.done:
            self.progress.info(f"{names(containers)} unhealthy")

    def _further_interrupt(self) -> int:
        """For waits after the point of no return (or during a roll-back): the first interrupt only says "finish",
        a further one ends the wait."""
        return max(self.interrupts.count, 1)

    def _check_interrupt(self) -> None:
        """At a safe point: before the first pre-stop an interrupt becomes a roll-back, after it we carry on."""
        signum = self.interrupts.first_signal
        if signum is None:
            return
        if rolls_back(self.phase):
            raise Interrupted(f"interrupted by {signal_name(signum)} during {self.phase.value}", signum)


def run_concurrently(action: Callable[[Container], None], containers: Sequence[Container]) -> None:
    """One thread per container: the engine works on them in parallel, and the slowest sets the pace."""
    concurrently([functools.partial(action, c) for c in containers])


def names(containers: Sequence[Container]) -> str:
    return ", ".join(c.name for c in containers) or "none"


def describe_states(containers: Sequence[Container]) -> str:
    return ", ".join(f"{c.name} {c.health or c.status}" for c in containers) or "none"


def describe(containers: Sequence[Container]) -> str:
    return ", ".join(f"{c.name} ({c.short_id})" for c in containers) or "none"


def quote_command(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(word) for word in argv)



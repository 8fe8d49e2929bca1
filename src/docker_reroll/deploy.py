"""One service, from its old containers to its new ones: what to do in which order, and what a failure or an
interrupt means at each step.

    discover -> scale up (+K) -> wait until ready -> | pre-stop -> drain -> retire K old | -> next batch
                 ^-- failure or interrupt: roll back -^ | interrupt: finish this batch      |

Before a batch's first pre-stop command nothing old has been touched, so any failure or interrupt rolls that batch
back: its new containers are retired and the old ones keep serving. After it, the old containers may already be
leaving the proxy's pool, so the only safe way out of that batch is forward. With one batch (the default: all new
containers at once) that is the whole deploy. With several (--max-surge, deploy.update_config), a failure in a
later batch is handled as failure_action says: `rollback` brings the old config back for the batches already done
(clones of the old containers, ready before the new ones are drained), `pause` stops with a consistent count; an
interrupt stops before the next batch. The decisions are pure functions in planning.py; this carries them out
through `Docker`.
"""

import functools
import shlex
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Dict, List, NoReturn, Optional, Sequence

from docker_reroll.engine import Docker
from docker_reroll.errors import (
    DeployFailed,
    DockerCommandError,
    EngineUnreachable,
    Incomplete,
    Interrupted,
    LockLost,
    RefusedError,
    RerollError,
    first_line,
)
from docker_reroll.interrupts import Interrupts, signal_name
from docker_reroll.lock import EngineLock
from docker_reroll.model import GONE, Container, ServiceSpec, Status, serving, stale
from docker_reroll.options import FROM_DEFAULT, Options, settings_line
from docker_reroll.planning import (
    Batch,
    Drain,
    Plan,
    check_history,
    describe,
    describe_batches,
    describe_states,
    names,
    plan_batches,
    plan_deploy,
    plan_drain,
    replica_target,
    shown_pre_stop,
)
from docker_reroll.processes import concurrently
from docker_reroll.progress import (
    CREATED,
    DRAINING,
    EXITED,
    PAUSED,
    RUNNING,
    STARTING,
    STOPPING,
    WAITING_HEALTHY,
    Progress,
)
from docker_reroll.progress import REMOVED as REMOVED_STATE
from docker_reroll.watch import (
    ContainerWatch,
    Outcome,
    WaitStats,
    all_healthy,
    all_unhealthy,
    still_serving,
)

LOG_TAIL_LINES = 20
ROLLBACK_SETTLE_SECONDS = 0.5  # after an interrupted compose: let creations already sent to the engine land
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


@dataclass
class DeployReport:
    """The outcome, for the summary and the benchmark."""

    old: List[str] = field(default_factory=list)
    new: List[str] = field(default_factory=list)
    replicas: int = 0
    first_start: bool = False
    completed: bool = False  # only new containers serve
    batches: int = 1
    batch_seconds: List[float] = field(default_factory=list)  # each batch, from its scale-up to its last stop
    kept_old: List[str] = field(default_factory=list)  # old containers left in place of failed new ones
    phase_seconds: Dict[str, float] = field(default_factory=dict)
    old_containers: List[Container] = field(default_factory=list)  # as found, for the summary
    new_containers: List[Container] = field(default_factory=list)


class StoppedBetweenBatches(RerollError):
    """A later batch failed (failure_action: pause, or a tolerated failure) or was interrupted: the service holds
    its replica count, partly old, partly new; the journal stays so the next run replaces them all."""

    rolled_back = False


class Deployment:
    def __init__(self, options: Options, service: str, spec: Optional[ServiceSpec], project: str, docker: Docker,
                 progress: Progress, interrupts: Interrupts, lock: EngineLock) -> None:
        self.options = options  # this service's: the command line over its deploy.update_config
        self.service = service
        self.spec = spec
        self.project = project
        self.docker = docker
        self.progress = progress
        self.interrupts = interrupts
        self.lock = lock
        self.report = DeployReport()
        self._phase = Phase.PREPARE
        self._roles: Dict[str, str] = {}  # container id -> old, new or stale: what the display calls it
        self._marks: Dict[str, str] = {}  # container id -> draining or stopping: what we are doing to it
        self.watch: Optional[ContainerWatch] = None
        self.wait_stats: Optional[WaitStats] = None
        # False while old and new containers both exist: if we die then, the lock and journal stay behind so the
        # next run knows it must finish this deploy.
        self.consistent = True
        self._keep_journal = False  # stopped between batches: the next run must replace the rest

    @property
    def phase(self) -> Phase:
        return self._phase

    @phase.setter
    def phase(self, phase: Phase) -> None:
        """Enter a phase: it decides what an interrupt means, and the progress display times it."""
        self._phase = phase
        self.progress.phase(phase.value, self.service)

    # ------------------------------------------------------------------------------------------- the display

    def _show(self, containers: Sequence[Container], role: Optional[str] = None, mark: Optional[str] = None,
              state: Optional[str] = None) -> None:
        """Tell the progress display about these containers: their role in the deploy (given once), what we are
        doing to them until they are gone (`mark`: draining, stopping) or just now (`state`: starting), or else
        their state as the engine reports it."""
        for container in containers:
            if role is not None:
                self._roles[container.id] = role
            if mark is not None:
                self._marks[container.id] = mark
            self._show_state(container, state)

    def _show_state(self, container: Container, state: Optional[str] = None) -> None:
        role = self._roles.get(container.id)
        if role is None:
            return  # not ours to show (yet)
        if state is None:
            state = container_state(container)
            if container.status not in GONE and container.id in self._marks:
                state = self._marks[container.id]
        self.progress.container(self.service, container.id, container.name, role, state, container.image)

    # ------------------------------------------------------------------------------------------------- the story

    def run(self) -> DeployReport:
        """The lock is taken by the caller (a release takes all of its locks first, in a fixed order)."""
        lock = self.lock
        try:
            self.progress.phase(Phase.PREPARE.value, self.service)
            with ContainerWatch(self.docker, self.project, self.service, self.interrupts,
                                on_change=self._show_state) as self.watch:
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
            self.report.phase_seconds = self.progress.clock.seconds(self.service)
            if self.consistent:  # else lock and journal stay, for the next run to finish the deploy
                # Rolled back after an interrupted deploy: the service still has that deploy's extra containers,
                # so the journal must stay to tell the next run the real replica count.
                lock.release(keep_journal=self._keep_journal or (lock.journal_inherited and not self.report.completed))
        return self.report

    def _deploy(self, lock: EngineLock) -> None:
        self.progress.info(f"settings for {self.service}: {settings_line(self.options)}")
        plan = self._plan(lock)
        if plan.stale:
            self.progress.info(f"removing stopped containers: {names(plan.stale)}")
            self._show(plan.stale, role="stale")
            failures = self.docker.remove([c.id for c in plan.stale])
            if failures:  # compose would count it toward --scale, and it could outlive the deploy
                raise DeployFailed(f"could not remove stopped containers: {'; '.join(failures)}")
        self._check_interrupt()
        self.report.first_start = plan.first_start
        self.report.old = [c.id for c in plan.old]
        self.report.old_containers = list(plan.old)
        self._show(plan.old, role="old")
        self.report.replicas = plan.replicas
        if plan.first_start:
            self.progress.info(f"no running container of {self.service}: starting it")
            batches = [Batch(plan.replicas, 0)]
        else:
            lock.write_journal(plan.replicas, [c.id for c in plan.old])
            self.progress.info(f"old containers: {describe(plan.old)}")
            batches = plan_batches(len(plan.old), plan.replicas, self.options.max_surge)
        self.report.batches = len(batches)
        if len(batches) > 1:
            self._check_restorable(plan)
            self._say_batches(batches)
        self.consistent = False
        new = self._batches(plan, batches)
        self.consistent = True
        self.report.completed = not self.report.kept_old
        if self.report.kept_old:
            self._stop_between_batches(f"{len(self.report.kept_old)} old container(s) kept in place of new ones "
                                       f"that failed (tolerated by failure_action/max_failure_ratio)")
        self.progress.info(f"deployed {self.service}: {len(new)} container(s) serving: {describe(new)}")

    def _plan(self, lock: EngineLock) -> Plan:
        """The replica count after the deploy: --scale, else an interrupted deploy's journal, else the compose
        file's deploy.replicas/scale when it differs from what runs, else what runs."""
        containers = self._service_containers()
        scale = self.options.scale.get(self.service)
        running = len([c for c in containers if not stale(c)])
        wanted = self.spec.replicas if self.spec is not None else None
        target = replica_target(scale, lock.journal, wanted, running)
        if target is not None and target != scale:
            self.progress.info(f"the compose file sets {self.service} to {wanted} container(s) "
                               f"({self.spec.replicas_key if self.spec else ''}); {running} run now: the deploy "
                               f"ends with {wanted}")
        plan = plan_deploy(containers, lock.journal, target)
        check_history(self.service, plan.old, lock.journal, scale)
        if lock.journal is not None:
            self.progress.warn(f"an earlier deploy of {self.service} was interrupted; finishing it: the service "
                               f"goes to {plan.replicas} container(s), all on the current config")
        if scale is not None and scale != len(plan.old):
            self.progress.info(f"--scale: {self.service} goes from {len(plan.old)} to {scale} container(s)")
        return plan

    def _check_restorable(self, plan: Plan) -> None:
        """failure_action rollback across batches makes old containers again from what the engine knows of them;
        when that cannot be faithful, a rollback the user asked for is refused now, and the default one becomes a
        pause, said now."""
        if self.options.failure_action != "rollback":
            return
        missing = list(self.spec.done_at_start) if self.spec is not None else []
        missing += self.docker.plan_clone(self.docker.inspect_raw([plan.old[0].id])[0], 0).unsupported
        if not missing:
            return
        why = f"the old containers use {', '.join(missing)}, which docker-reroll cannot make again by itself"
        asked = self.options.source("failure_action")
        if asked != FROM_DEFAULT:
            raise RefusedError(f"failure_action rollback ({asked}) across batches cannot be kept: {why}; set "
                               "failure_action: pause, or deploy all new containers at once (no batches)")
        self.progress.warn(f"failure_action rollback: {why}; a failure after the first batch pauses instead")
        self.options.set("failure_action", "pause", "docker-reroll (old containers cannot be made again)")

    def _say_batches(self, batches: List[Batch]) -> None:
        options = self.options
        self.progress.info(describe_batches(options, len(batches)))
        if options.update_order == "stop-first":
            self.progress.info("deploy.update_config.order is stop-first: treated as start-first (new containers "
                               "start before old ones stop: that is what this tool is for)")

    def _service_containers(self) -> List[Container]:
        """Every container compose made for the service (one-off `run` containers excluded), inspected through
        the watch, whose events keep them current from then on."""
        assert self.watch is not None
        ids = self.docker.service_container_ids(self.project, self.service)
        return [c for c in self.watch.refresh(ids) if not c.oneoff and c.status != Status.REMOVED]

    # ------------------------------------------------------------------------------------------------ batches

    def _batches(self, plan: Plan, batches: List[Batch]) -> List[Container]:
        """Each batch: scale up, wait, then drain and retire old ones. Returns the new containers."""
        old_left = list(plan.old)
        kept: List[Container] = []  # old containers left in place of new ones whose failure was tolerated
        done: List[Container] = []
        retired: List[Dict[str, object]] = []  # what the engine knew of each retired old container: for clones
        failed = 0
        for index, batch in enumerate(batches):
            if index:
                self._between_batches(index, len(batches))
            started = time.monotonic()
            label = f"batch {index + 1} of {len(batches)}" if len(batches) > 1 else ""
            try:
                new = self._roll_out(plan, batch, keep=old_left + kept + done, label=label, paused=plan.paused)
            except (LockLost, Incomplete):
                raise
            except Interrupted as error:
                if index == 0:
                    raise
                self._stop_between_batches(f"{error} (batch {index + 1} was rolled back)", error)
            except RerollError as error:
                if index == 0:
                    raise
                failed += getattr(error, "failed", None) or batch.start  # the containers that failed
                if self._tolerated(failed, plan.replicas):
                    self.progress.warn(f"{label} failed ({error}); tolerated: its {batch.retire} old container(s) "
                                       "stay, the update goes on")
                    kept += old_left[:batch.retire]
                    old_left = old_left[batch.retire:]
                    self.report.kept_old = [c.id for c in kept]
                    continue
                if self.options.failure_action == "rollback":
                    self._restore_old_config(retired, done, old_left + kept, cause=error)
                    raise DeployFailed(f"{label} failed ({error}); failure_action rollback: every batch went back "
                                       "to the old config") from None
                self._stop_between_batches(f"{label} failed ({error}); failure_action pause")
            retiring, old_left = old_left[:batch.retire], old_left[batch.retire:]
            if retiring and self.options.failure_action == "rollback" and len(batches) > 1:
                retired += self.docker.inspect_raw([c.id for c in retiring])
            self.phase = Phase.PRE_STOP
            self._retire(retiring, rolling_back=False, replacements=done + new)
            done += new
            self.report.new = [c.id for c in done]
            self.report.new_containers = list(done)
            self.report.batch_seconds.append(time.monotonic() - started)
        return done

    def _between_batches(self, index: int, count: int) -> None:
        """The delay before the next batch (deploy.update_config.delay); an interrupt here stops the update."""
        assert self.watch is not None
        if self.options.update_delay > 0:
            self.progress.info(f"waiting {self.options.update_delay:g}s before batch {index + 1} of {count}")
            self.watch.pause(self.options.update_delay, interrupts_seen=0)
        signum = self.interrupts.first_signal
        if signum is not None:
            self._stop_between_batches(f"interrupted by {signal_name(signum)} before batch {index + 1} of {count}",
                                       Interrupted("", signum))

    def _tolerated(self, failed: int, replicas: int) -> bool:
        return self.options.failure_action == "continue" or failed / replicas <= self.options.max_failure_ratio

    def _stop_between_batches(self, why: str, interrupt: Optional[Interrupted] = None) -> NoReturn:
        """Stop with the service at its replica count, partly on the old config: the journal is written again
        for what runs now, so the next run replaces them all; raises."""
        current = [c for c in self._service_containers() if not stale(c)]
        self.lock.rewrite_journal(self.report.replicas, [c.id for c in current])
        self._keep_journal = True
        self.consistent = True
        message = (f"{why}: stopped with {len(current)} container(s) of {self.service} serving, some still on the "
                   f"old config; run `docker reroll {self.service}` again to replace them all")
        if interrupt is not None:
            raise Interrupted(message, interrupt.exit_code - 128, rolled_back=False)
        raise StoppedBetweenBatches(message)

    def _restore_old_config(self, retired: List[Dict[str, object]], done: List[Container],
                            old_left: List[Container], cause: Exception) -> None:
        """failure_action rollback after some batches: make the retired old containers again (clones of what the
        engine knew of them), wait until they are ready, then drain and retire the new ones."""
        assert self.watch is not None
        self.progress.warn(f"rolling back every batch: {cause}")
        self.progress.phase("roll back", self.service)
        numbers = [c.number for c in self._service_containers()]
        made = []
        for offset, item in enumerate(retired, start=1):
            made.append(self.docker.create_clone(item, max(numbers, default=0) + offset))
        self.progress.info(f"made {len(made)} container(s) on the old config again; starting them")
        self._show(self.watch.refresh(made), role="old")
        try:
            self._start_together(self.watch.refresh(made))
            clones = self.watch.refresh(made)
            self._wait_ready(clones, interrupts_seen=self._further_interrupt())  # Ctrl-C now means: finish it
        except RerollError as error:
            raise Incomplete(f"could not bring the old config back ({error}): {self.service} runs new and old "
                             f"containers; run `docker reroll {self.service}` again") from None
        self._retire(done, rolling_back=False, replacements=clones + old_left)
        self.report.new, self.report.new_containers = [], []  # none of the new config serves any more
        self.consistent = True
        self.progress.info(f"rolled back: the old config serves again: {describe(clones + old_left)}")

    # -------------------------------------------------------------------------------------------- one batch

    def _roll_out(self, plan: Plan, batch: Batch, keep: List[Container], label: str,
                  paused: List[Container]) -> List[Container]:
        """Start this batch's new containers and wait for them; on any failure or interrupt, retire them (the
        containers in `keep` were never touched) and raise."""
        new: List[Container] = []
        try:
            self.phase = Phase.SCALE_UP
            if not keep or keep == plan.old:
                self._unpause(paused)
            new = self._scale_up(plan, batch, keep, label)
            self._check_interrupt()
            self.progress.info(f"new containers: {describe(new)}")
            self.phase = Phase.WAIT_READY
            self._wait_ready(new)
            self._check_interrupt()
            return new
        except (LockLost, EngineUnreachable):
            raise  # the service is another run's now, or no engine answers: nothing can be rolled back
        except Exception as error:  # whatever went wrong, nothing old was touched yet: go back
            try:
                self._roll_back(keep, paused if keep == plan.old else [], error)
            except (LockLost, Incomplete, Interrupted):
                raise
            except RerollError as failure:  # not a batch that failed: the service now has too many containers
                raise Incomplete(f"the roll-back failed ({failure}) after: {error}; {self.service} runs old and new "
                                 f"containers: run `docker reroll {self.service}` again") from None
            if keep == plan.old:
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

    def _scale_up(self, plan: Plan, batch: Batch, keep: List[Container], label: str) -> List[Container]:
        """Have compose make the batch's new containers; returns them, running.

        Compose starts the containers of a scaled service one after another (about 0.3 s each on a small machine),
        so when several are new it only creates them (`up --no-start`) and we start them all at once, unless the
        service uses something compose does only as it starts a container itself (hooks, inline configs and
        secrets): then compose starts them, one by one."""
        done_at_start = self.spec.done_at_start if self.spec is not None else []
        start_together = not plan.first_start and batch.start > 1 and not done_at_start
        if not plan.first_start and batch.start > 1 and done_at_start:
            self.progress.info(f"compose starts the new containers itself, one by one: the service uses "
                               f"{', '.join(done_at_start)}, which compose sets up as it starts a container")
        self.lock.verify(journal=True)
        scale_to = len(keep) + batch.start
        try:
            if plan.first_start:  # dependencies may not be up yet: let compose start them
                self.docker.compose_up(self.service, scale=plan.replicas or None, no_deps=False,
                                       cancel=self.interrupts.requested, on_line=self.progress.compose_output)
            else:
                within = f" ({label})" if label else ""
                self.progress.info(f"scaling {self.service} from {len(keep)} to {scale_to} containers{within}")
                self.docker.compose_up(self.service, scale=scale_to, no_deps=True, cancel=self.interrupts.requested,
                                       start=not start_together, on_line=self.progress.compose_output)
        except DockerCommandError:
            self._check_interrupt()  # compose failed because we stopped it: that is the interrupt, not an error
            raise
        keep_ids = {c.id for c in keep}
        new = sorted((c for c in self._service_containers() if c.id not in keep_ids), key=lambda c: c.number)
        self._show(new, role="new")
        if not new or (not plan.first_start and len(new) != batch.start):
            raise DeployFailed(f"compose created {len(new)} new container(s), expected {batch.start}")
        if start_together:
            assert self.watch is not None
            self._start_together(new)
            # Started, their health check now shows; inspected through the watch, which then keeps them current.
            new = self.watch.refresh([c.id for c in new])
            vanished = [c for c in new if c.status == Status.REMOVED]
            if vanished:
                raise DeployFailed(f"new container(s) vanished after starting: {names(vanished)}")
        return new

    def _start_together(self, containers: List[Container]) -> None:
        self.progress.info(f"starting {len(containers)} new containers at once")
        self._show(containers, state=STARTING)
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

    def _wait_ready(self, new: List[Container], interrupts_seen: int = 0) -> None:
        """Until the new containers are ready; an interrupt beyond the first `interrupts_seen` ends the wait."""
        assert self.watch is not None
        ids = [c.id for c in new]
        if any(c.has_healthcheck for c in new):  # the new config decides: it may add or drop a health check
            timeout = self.options.healthcheck_timeout
            self.progress.info(f"waiting up to {timeout:g}s for {len(ids)} new container(s) to be healthy")
            outcome = self.watch.wait(ids, all_healthy, timeout, interrupts_seen=interrupts_seen)
            self._raise_unless_done(outcome, ids, f"not healthy after {timeout:g}s")
            self.progress.info(f"{len(ids)}/{len(ids)} new container(s) healthy")
            if self.options.wait_after_healthy > 0:
                self._stay_up(ids, self.options.wait_after_healthy, "after healthy", interrupts_seen)
        else:
            self._stay_up(ids, self.options.wait, "(no health check) before checking the new containers",
                          interrupts_seen)
        monitor = self.options.update_monitor
        if monitor > 0:  # deploy.update_config.monitor: a batch must stay healthy this long before it counts
            self._stay_up(ids, monitor, f"monitoring them ({self.options.source('update_monitor')})",
                          interrupts_seen)

    def _stay_up(self, ids: List[str], seconds: float, why: str, interrupts_seen: int = 0) -> None:
        """Wait `seconds`; the new containers must keep serving all along. One that stops or turns unhealthy fails
        the deploy at once, and any interrupt (we are before the point of no return) ends the wait."""
        assert self.watch is not None
        self.progress.info(f"waiting {seconds:g}s {why}")
        outcome = self.watch.wait(ids, still_serving, seconds, interrupts_seen=interrupts_seen)
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
        failure = DeployFailed(outcome.reason or timeout_reason)
        failure.failed = self._diagnose(ids)
        raise failure

    def _diagnose(self, ids: Sequence[str]) -> int:
        """What went wrong, from the engine: each failed container's last health output and its last log lines.
        Inspected now: events say a container turned unhealthy, not what its check printed. Returns how many
        failed (a batch's failure ratio counts them, as Swarm counts failed tasks)."""
        assert self.watch is not None
        failed = 0
        for container in self.watch.refresh(ids):
            if serving(container):
                continue
            failed += 1
            state = container.health or container.status
            self.progress.error(f"{container.name} ({container.short_id}) is {state}")
            if container.health_output:
                self.progress.detail(f"last health check output of {container.name}", container.health_output)
            self.progress.detail(f"last {LOG_TAIL_LINES} log lines of {container.name}",
                                 self.docker.logs_tail(container.id, LOG_TAIL_LINES))
        return failed

    def _roll_back(self, keep: List[Container], paused: List[Container], cause: Exception) -> None:
        """Retire every container not in `keep`; those were never touched (the paused ones among them are paused
        again)."""
        self.progress.warn(f"rolling back: {cause}")
        self.progress.phase("roll back", self.service)
        keep_ids = {c.id for c in keep}
        if self.phase == Phase.SCALE_UP and self.interrupts.requested():
            time.sleep(ROLLBACK_SETTLE_SECONDS)
        for _ in range(2):  # a second look catches a container the engine finished creating after compose stopped
            new = [c for c in self._service_containers() if c.id not in keep_ids]
            if not new:
                break
            self._show([c for c in new if c.id not in self._roles], role="new")
            self._retire(new, rolling_back=True)
        if paused:
            self.progress.info(f"pausing {names(paused)} again, as they were")
            failures = self.docker.pause([c.id for c in paused])
            if failures:
                self.progress.warn(f"could not pause them again: {'; '.join(failures)}")
        self.progress.info(f"rolled back: the old containers keep serving: {describe(keep)}")

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
        self._show(drain.containers, mark=DRAINING)
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
        ids = [c.id for c in containers if c.status != Status.REMOVED]
        if not ids:
            return
        self.progress.info(f"stopping {names(containers)}")
        self._show(containers, mark=STOPPING)
        grace = max((c.stop_timeout or DEFAULT_STOP_TIMEOUT for c in containers), default=DEFAULT_STOP_TIMEOUT)
        stop = self.docker.stop(ids, grace_seconds=grace)
        if stop.returncode != 0:
            self.progress.warn(f"docker stop: {stop.stderr.strip()}")
        self.progress.info(f"removing {names(containers)}")
        failures = self.docker.remove(ids)
        if failures:
            raise DeployFailed(f"could not remove {names(containers)}: {'; '.join(failures)}")
        self._show(self.watch.known(ids) if self.watch else [])

    def _run_pre_stop(self, containers: List[Container]) -> None:
        """The pre-stop command for every container at once; a failure is a warning, as in the original tool.
        Each is bounded (see PRE_STOP_MIN_TIMEOUT), and a further interrupt ends it, with all it started."""
        timeout = max(self.options.healthcheck_timeout, PRE_STOP_MIN_TIMEOUT)
        env = self.docker.environment_for_user_commands()
        seen = self._further_interrupt()

        def one(container: Container) -> None:
            argv, shown = self._pre_stop_argv(container)
            self.progress.info(f"running pre-stop command for {container.name}: {shown}")
            try:
                result = self.docker.runner.run(argv, check=False, capture=True, timeout=timeout,
                                                cancel=lambda: self.interrupts.count > seen, env=env)
            except DockerCommandError as error:
                self.progress.warn(f"pre-stop command for {container.name} could not run: {error}")
                return
            for line in (result.stdout + result.stderr).strip().splitlines():
                self.progress.output("pre-stop", line, container.name)
            if result.ended == "timeout":
                self.progress.warn(f"pre-stop command for {container.name} ran past {timeout:g}s: ended it")
            elif result.ended == "cancelled":
                self.progress.warn(f"pre-stop command for {container.name} ended by a further interrupt")
            elif result.returncode != 0:
                self.progress.warn(f"pre-stop command for {container.name} exited with {result.returncode}")

        run_concurrently(one, containers)

    def _pre_stop_argv(self, container: Container) -> "tuple[List[str], str]":
        """--pre-stop-exec runs inside the container (docker exec, through our own docker and its flags);
        --pre-stop-cmd through sh on this machine, with {id} filled in. The argv, and how to show it."""
        shown = shown_pre_stop(self.options, container)
        if self.options.pre_stop_exec:
            return self.docker.docker("exec", container.id, *shlex.split(self.options.pre_stop_exec)), shown
        return ["sh", "-c", shown], shown

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


def container_state(container: Container) -> str:
    """A container's state in the display's words (see progress.py)."""
    if container.status == Status.REMOVED:
        return REMOVED_STATE
    if container.status in ("exited", "dead"):
        return EXITED
    if container.status in (CREATED, PAUSED):
        return container.status
    if container.health == "starting":
        return WAITING_HEALTHY
    return container.health or RUNNING


def run_concurrently(action: Callable[[Container], None], containers: Sequence[Container]) -> None:
    """One thread per container: the engine works on them in parallel, and the slowest sets the pace."""
    concurrently([functools.partial(action, c) for c in containers])


def quote_command(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(word) for word in argv)



"""One batch of new containers: compose makes them (the current config and image), they start, and they are
waited for until ready; on any failure or interrupt before that, they are retired again and what ran before is
left untouched (a roll-back)."""

import time
from typing import List

from docker_reroll.context import DeployContext
from docker_reroll.errors import (
    DeployFailed,
    DockerCommandError,
    EngineUnreachable,
    Incomplete,
    Interrupted,
    LockLost,
    RerollError,
)
from docker_reroll.model import Container, Status
from docker_reroll.planning import Batch, ServicePlan, describe, names
from docker_reroll.processes import concurrently
from docker_reroll.readiness import wait_ready
from docker_reroll.retire import Retirement
from docker_reroll.vocabulary import Phase, Role, Shown

ROLLBACK_SETTLE_SECONDS = 0.5  # after an interrupted compose: let creations already sent to the engine land


class Rollout:
    def __init__(self, ctx: DeployContext, retirement: Retirement) -> None:
        self.ctx = ctx
        self.retirement = retirement

    def roll_out(self, plan: ServicePlan, batch: Batch, keep: List[Container], label: str) -> List[Container]:
        """Start this batch's new containers and wait for them; on any failure or interrupt, retire them (the
        containers in `keep` were never touched) and raise."""
        ctx = self.ctx
        from_the_start = not keep or keep == plan.old
        paused = plan.paused if from_the_start else []
        try:
            ctx.enter(Phase.SCALE_UP)
            self._unpause(paused)
            new = self._scale_up(plan, batch, keep, label)
            ctx.check_interrupt()
            ctx.progress.info(f"new containers: {describe(new)}")
            ctx.enter(Phase.WAIT_READY)
            wait_ready(ctx, new)
            ctx.check_interrupt()
            return new
        except (LockLost, EngineUnreachable):
            raise  # the service is another run's now, or no engine answers: nothing can be rolled back
        except Exception as error:  # whatever went wrong, nothing old was touched yet: go back
            try:
                self.roll_back(keep, paused, error)
            except (LockLost, Incomplete, Interrupted):
                raise
            except RerollError as failure:  # not a batch that failed: the service now has too many containers
                raise Incomplete(f"the roll-back failed ({failure}) after: {error}; {ctx.service} runs old and new "
                                 f"containers: run `docker reroll {ctx.service}` again") from None
            if from_the_start:
                ctx.consistent = True
            raise

    def roll_back(self, keep: List[Container], paused: List[Container], cause: Exception) -> None:
        """Retire every container not in `keep`; those were never touched (the paused ones among them are paused
        again)."""
        ctx = self.ctx
        ctx.progress.warn(f"rolling back: {cause}")
        ctx.progress.phase(Phase.ROLL_BACK, ctx.service)
        keep_ids = {c.id for c in keep}
        if ctx.phase == Phase.SCALE_UP and ctx.interrupts.requested():
            time.sleep(ROLLBACK_SETTLE_SECONDS)
        for _ in range(2):  # a second look catches a container the engine finished creating after compose stopped
            new = [c for c in ctx.service_containers() if c.id not in keep_ids]
            if not new:
                break
            ctx.display.show([c for c in new if not ctx.display.knows(c)], role=Role.NEW)
            self.retirement.retire(new, rolling_back=True)
        if paused:
            ctx.progress.info(f"pausing {names(paused)} again, as they were")
            try:
                ctx.docker.pause([c.id for c in paused])
            except DockerCommandError as error:
                ctx.progress.warn(f"could not pause them again: {error.failures()}")
        ctx.progress.info(f"rolled back: the old containers keep serving: {describe(keep)}")

    def _unpause(self, paused: List[Container]) -> None:
        """Compose starts every container of the service that is not running, and the engine refuses to start
        a paused one: resume them first (they are replaced with the others, or paused again on a roll-back)."""
        if not paused:
            return
        self.ctx.progress.info(f"unpausing {names(paused)}: compose cannot scale a service with a paused "
                               "container; they are replaced with the others")
        try:
            self.ctx.docker.unpause([c.id for c in paused])
        except DockerCommandError as error:
            raise DeployFailed(f"could not unpause {names(paused)}: {error.failures()}") from None

    def _scale_up(self, plan: ServicePlan, batch: Batch, keep: List[Container], label: str) -> List[Container]:
        """Have compose make the batch's new containers; returns them, running.

        Compose starts the containers of a scaled service one after another (about 0.3 s each on a small machine),
        so when several are new it only creates them (`up --no-start`) and we start them all at once, unless the
        service uses something compose does only as it starts a container itself (hooks, inline configs and
        secrets): then compose starts them, one by one."""
        ctx = self.ctx
        done_at_start = ctx.spec.done_at_start if ctx.spec is not None else []
        start_together = not plan.first_start and batch.start > 1 and not done_at_start
        if not plan.first_start and batch.start > 1 and done_at_start:
            ctx.progress.info(f"compose starts the new containers itself, one by one: the service uses "
                              f"{', '.join(done_at_start)}, which compose sets up as it starts a container")
        ctx.lock.verify(journal=True)
        scale_to = len(keep) + batch.start
        try:
            if plan.first_start:  # dependencies may not be up yet: let compose start them
                ctx.docker.compose_up(ctx.service, scale=plan.replicas or None, no_deps=False,
                                      cancel=ctx.interrupts.requested, on_line=ctx.progress.compose_output)
            else:
                within = f" ({label})" if label else ""
                ctx.progress.info(f"scaling {ctx.service} from {len(keep)} to {scale_to} containers{within}")
                ctx.docker.compose_up(ctx.service, scale=scale_to, no_deps=True, cancel=ctx.interrupts.requested,
                                      start=not start_together, on_line=ctx.progress.compose_output)
        except DockerCommandError:
            ctx.check_interrupt()  # compose failed because we stopped it: that is the interrupt, not an error
            raise
        keep_ids = {c.id for c in keep}
        new = sorted((c for c in ctx.service_containers() if c.id not in keep_ids), key=lambda c: c.number)
        ctx.display.show(new, role=Role.NEW)
        if not new or (not plan.first_start and len(new) != batch.start):
            raise DeployFailed(f"compose created {len(new)} new container(s), expected {batch.start}")
        if start_together:
            self.start_together(new)
            # Started, their health check now shows; inspected through the watch, which then keeps them current.
            new = ctx.watch.refresh([c.id for c in new])
            vanished = [c for c in new if c.status == Status.REMOVED]
            if vanished:
                raise DeployFailed(f"new container(s) vanished after starting: {names(vanished)}")
        return new

    def start_together(self, containers: List[Container]) -> None:
        """One `docker start` per container, all at once: the engine works on them in parallel."""
        ctx = self.ctx
        ctx.progress.info(f"starting {len(containers)} new containers at once")
        ctx.display.show(containers, state=Shown.STARTING)
        failures: List[str] = []

        def start(container: Container) -> None:
            try:
                ctx.docker.start(container.id)
            except DockerCommandError as error:
                failures.append(f"{container.name}: {error.failures()}")

        concurrently([lambda c=c: start(c) for c in containers])  # type: ignore[misc]
        if failures:
            raise DeployFailed("could not start " + "; ".join(failures))

"""A rolling update in batches (--max-surge, deploy.update_config): each batch starts its new containers, waits
for them, then drains and retires as many old ones. What a failure in a later batch does is the failure action's:
`continue` (or a failure within max_failure_ratio) keeps that batch's old containers and goes on; `rollback` makes
the old config again for the batches already done (clones of the retired containers, ready before the new ones
are drained); `pause` stops with the service at its replica count. An interrupt stops before the next batch."""

import time
from typing import Dict, List, NoReturn, Optional

from docker_reroll.context import DeployContext
from docker_reroll.errors import DeployFailed, Incomplete, Interrupted, LockLost, RerollError, StoppedBetweenBatches
from docker_reroll.interrupts import signal_name
from docker_reroll.model import Container, stale
from docker_reroll.planning import ServicePlan, describe
from docker_reroll.readiness import wait_ready
from docker_reroll.retire import Retirement
from docker_reroll.rollout import Rollout
from docker_reroll.vocabulary import Phase, Role


class Batches:
    def __init__(self, ctx: DeployContext, rollout: Rollout, retirement: Retirement) -> None:
        self.ctx = ctx
        self.rollout = rollout
        self.retirement = retirement

    def run(self, plan: ServicePlan) -> List[Container]:
        """Each batch: scale up, wait, then drain and retire old ones. Returns the new containers."""
        ctx, batches = self.ctx, plan.batches
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
                new = self.rollout.roll_out(plan, batch, keep=old_left + kept + done, label=label)
            except (LockLost, Incomplete):
                raise
            except Interrupted as error:
                if index == 0:
                    raise
                self.stop(f"{error} (batch {index + 1} was rolled back)", done, error)
            except RerollError as error:
                if index == 0:
                    raise
                failed += error.failed if isinstance(error, DeployFailed) and error.failed else batch.start
                if self._tolerated(failed, plan.replicas):
                    ctx.progress.warn(f"{label} failed ({error}); tolerated: its {batch.retire} old container(s) "
                                      "stay, the update goes on")
                    kept += old_left[:batch.retire]
                    old_left = old_left[batch.retire:]
                    ctx.report.kept_old = [c.id for c in kept]
                    continue
                if ctx.options.failure_action == "rollback":
                    self._restore_old_config(retired, done, old_left + kept, cause=error)
                    raise DeployFailed(f"{label} failed ({error}); failure_action rollback: every batch went back "
                                       "to the old config") from None
                self.stop(f"{label} failed ({error}); failure_action pause", done)
            retiring, old_left = old_left[:batch.retire], old_left[batch.retire:]
            if retiring and ctx.options.failure_action == "rollback" and len(batches) > 1:
                retired += ctx.docker.inspect_raw([c.id for c in retiring])
            ctx.enter(Phase.PRE_STOP)  # the point of no return for this batch
            self.retirement.retire(retiring, rolling_back=False, replacements=done + new)
            done += new
            ctx.report.new = [c.id for c in done]
            ctx.report.new_containers = list(done)
            ctx.report.batch_seconds.append(time.monotonic() - started)
        return done

    def _between_batches(self, index: int, count: int) -> None:
        """The delay before the next batch (deploy.update_config.delay); an interrupt here stops the update."""
        ctx = self.ctx
        if ctx.options.update_delay > 0:
            ctx.progress.info(f"waiting {ctx.options.update_delay:g}s before batch {index + 1} of {count}")
            ctx.watch.pause(ctx.options.update_delay, interrupts_seen=0)
        signum = ctx.interrupts.first_signal
        if signum is not None:
            self.stop(f"interrupted by {signal_name(signum)} before batch {index + 1} of {count}",
                      [c for c in ctx.report.new_containers], Interrupted("", signum))

    def _tolerated(self, failed: int, replicas: int) -> bool:
        options = self.ctx.options
        return options.failure_action == "continue" or failed / replicas <= options.max_failure_ratio

    def stop(self, why: str, done: List[Container], interrupt: Optional[Interrupted] = None) -> NoReturn:
        """Stop with the service at its replica count, partly on the old config: the journal is written again
        for what runs now, so the next run replaces them all; raises."""
        ctx = self.ctx
        current = [c for c in ctx.service_containers() if not stale(c)]
        ctx.lock.rewrite_journal(ctx.report.replicas, [c.id for c in current])
        ctx.keep_journal = True
        ctx.consistent = True
        new_ids = {c.id for c in done}
        old = len([c for c in current if c.id not in new_ids])
        message = (f"{why}: stopped with {len(current)} container(s) of {ctx.service} serving, {old} of them on the "
                   f"old config; run `docker reroll {ctx.service}` again to replace them all")
        if interrupt is not None:
            raise Interrupted(message, interrupt.exit_code - 128, rolled_back=False)
        raise StoppedBetweenBatches(message)

    def _restore_old_config(self, retired: List[Dict[str, object]], done: List[Container],
                            old_left: List[Container], cause: Exception) -> None:
        """failure_action rollback after some batches: make the retired old containers again (clones of what the
        engine knew of them), wait until they are ready, then drain and retire the new ones."""
        ctx = self.ctx
        ctx.progress.warn(f"rolling back every batch: {cause}")
        ctx.progress.phase(Phase.ROLL_BACK, ctx.service)
        numbers = [c.number for c in ctx.service_containers()]
        made = [ctx.docker.create_clone(item, max(numbers, default=0) + offset)
                for offset, item in enumerate(retired, start=1)]
        ctx.progress.info(f"made {len(made)} container(s) on the old config again; starting them")
        ctx.display.show(ctx.watch.refresh(made), role=Role.OLD)
        try:
            self.rollout.start_together(ctx.watch.refresh(made))
            clones = ctx.watch.refresh(made)
            wait_ready(ctx, clones, interrupts_seen=ctx.further_interrupt())  # Ctrl-C now means: finish it
        except RerollError as error:
            raise Incomplete(f"could not bring the old config back ({error}): {ctx.service} runs new and old "
                             f"containers; run `docker reroll {ctx.service}` again") from None
        self.retirement.retire(done, rolling_back=False, replacements=clones + old_left)
        ctx.report.new, ctx.report.new_containers = [], []  # none of the new config serves any more
        ctx.consistent = True
        ctx.progress.info(f"rolled back: the old config serves again: {describe(clones + old_left)}")

"""Whether new containers are ready, and stay so: healthy within --healthcheck-timeout (then --wait-after-healthy),
or, without a health check, still running after --wait; then a batch's monitor time. A container that stops fails
the deploy at once, with what the engine says about it; one not yet healthy may still turn healthy within the
timeout (Docker lets an unhealthy container recover), but once ready, turning unhealthy fails the deploy at once."""

from typing import List, Sequence

from docker_reroll.context import DeployContext
from docker_reroll.errors import DeployFailed
from docker_reroll.model import Container, serving
from docker_reroll.vocabulary import Ended
from docker_reroll.watch import WaitEnd, all_healthy, still_serving

LOG_TAIL_LINES = 20


def wait_ready(ctx: DeployContext, new: List[Container], interrupts_seen: int = 0) -> None:
    """Until the new containers are ready; an interrupt beyond the first `interrupts_seen` ends the wait. In proxy
    mode the proxy's own check must pass too, and replaces --wait's clock where there is no health check."""
    options = ctx.options
    ids = [c.id for c in new]
    if ctx.proxy is not None and not any(c.has_healthcheck for c in new):
        ctx.proxy.wait_ready(new, options.healthcheck_timeout)
        return
    if any(c.has_healthcheck for c in new):  # the new config decides: it may add or drop a health check
        timeout = options.healthcheck_timeout
        ctx.progress.info(f"waiting up to {timeout:g}s for {len(ids)} new container(s) to be healthy")
        outcome = ctx.watch.wait(ids, all_healthy, timeout, interrupts_seen=interrupts_seen)
        _raise_unless_done(ctx, outcome, ids, f"not healthy after {timeout:g}s")
        ctx.progress.info(f"{len(ids)}/{len(ids)} new container(s) healthy")
        if options.wait_after_healthy > 0:
            _stay_up(ctx, ids, options.wait_after_healthy, "after healthy", interrupts_seen)
    else:
        _stay_up(ctx, ids, options.wait, "(no health check) before checking the new containers", interrupts_seen)
    if options.update_monitor > 0:  # deploy.update_config.monitor: a batch must stay healthy this long to count
        _stay_up(ctx, ids, options.update_monitor, f"monitoring them ({options.source('update_monitor')})",
                 interrupts_seen)
    if ctx.proxy is not None:
        ctx.proxy.wait_ready(new, options.healthcheck_timeout)


def _stay_up(ctx: DeployContext, ids: List[str], seconds: float, why: str, interrupts_seen: int) -> None:
    """Wait `seconds`; the new containers must keep serving all along. One that stops or turns unhealthy fails
    the deploy at once, and any interrupt (we are before the point of no return) ends the wait."""
    ctx.progress.info(f"waiting {seconds:g}s {why}")
    outcome = ctx.watch.wait(ids, still_serving, seconds, interrupts_seen=interrupts_seen)
    if outcome.how != Ended.TIMEOUT:  # here the time running out is the success
        _raise_unless_done(ctx, outcome, ids, "")
    # One last look through the engine itself, not only its events: this decides whether the old ones go.
    failed = still_serving(ctx.watch.refresh(ids))
    if failed is not None:
        _raise_unless_done(ctx, failed, ids, "")


def _raise_unless_done(ctx: DeployContext, outcome: WaitEnd, ids: List[str], timeout_reason: str) -> None:
    if outcome.done:
        return
    if outcome.how == Ended.INTERRUPTED:
        ctx.check_interrupt()
    failure = DeployFailed(outcome.reason or timeout_reason)
    failure.failed = diagnose(ctx, ids)
    raise failure


def diagnose(ctx: DeployContext, ids: Sequence[str]) -> int:
    """What went wrong, from the engine: each failed container's last health output and its last log lines.
    Inspected now: events say a container turned unhealthy, not what its check printed. Returns how many failed
    (a batch's failure ratio counts them, as Swarm counts failed tasks)."""
    failed = 0
    for container in ctx.watch.refresh(ids):
        if serving(container):
            continue
        failed += 1
        ctx.progress.error(f"{container.name} ({container.short_id}) is {container.health or container.status}")
        if container.health_output:
            ctx.progress.detail(f"last health check output of {container.name}", container.health_output)
        ctx.progress.detail(f"last {LOG_TAIL_LINES} log lines of {container.name}",
                            ctx.docker.logs_tail(container.id, LOG_TAIL_LINES))
    return failed

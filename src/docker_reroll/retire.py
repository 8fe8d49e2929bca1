"""Taking containers out of service: drain them, then stop and remove them. The old containers at the end of a
deploy, or the new ones on a roll-back.

The drain is a strategy. `HealthCheckDrain` is the pre-stop command, then a floor (--drain-time) and Docker's
verdict: the proxy learns of the drain from the container's own failing health check, on its own schedule.
"""

import shlex
import time
from typing import Callable, List, Optional, Sequence, Tuple

from docker_reroll.context import DeployContext
from docker_reroll.errors import DeployFailed, DockerCommandError, Incomplete
from docker_reroll.model import Container, Status, serving
from docker_reroll.planning import Drain, describe_states, names, plan_drain, shown_pre_stop
from docker_reroll.processes import concurrently
from docker_reroll.readiness import diagnose
from docker_reroll.vocabulary import Ended, Phase, Shown
from docker_reroll.watch import all_unhealthy

DEFAULT_STOP_TIMEOUT = 10  # the engine's grace period for a container that does not set one
LAST_LOOKS_LEAD = 0.25  # the checks before a stop start this long before the drain ends (they take 30-200 ms)
PRE_STOP_MIN_TIMEOUT = 10.0  # a pre-stop command may run for --healthcheck-timeout seconds, and at least this long

LastLooks = List[Callable[[], None]]  # docker calls made just before the stop: the lock, a replacement serves


class DrainStrategy:
    """How containers leave the proxy's pool before they are stopped: `HealthCheckDrain` here, `ProxyDrain` in
    proxy mode (proxy_drain.py). It makes the `last_looks` before it returns."""

    def drain(self, containers: List[Container], rolling_back: bool, last_looks: LastLooks) -> None:
        raise NotImplementedError


class HealthCheckDrain(DrainStrategy):
    """Pre-stop command, then keep the containers running through the floor and, for those that can, until
    Docker calls them unhealthy (whichever is later), then the pause. The floor counts from when the pre-stop
    commands finished: Docker may report "unhealthy" a few milliseconds after them, long before a proxy's next
    check has seen the failure, and stopping then fails requests. The `last_looks` before the stop are made during
    the end of the drain, so they cost it no time; it never ends before them."""

    def __init__(self, ctx: DeployContext) -> None:
        self.ctx = ctx

    def drain(self, containers: List[Container], rolling_back: bool, last_looks: LastLooks) -> None:
        ctx = self.ctx
        drain = plan_drain(containers, ctx.options, rolling_back)
        for note in drain.notes:
            ctx.progress.info(note)
        for warning in drain.warnings:
            ctx.progress.warn(warning)
        if not drain.draining:
            concurrently(last_looks)
            return
        ctx.display.show(drain.containers, mark=Shown.DRAINING)
        if drain.pre_stop:
            ctx.enter(Phase.PRE_STOP, rolling_back)
            self._run_pre_stop(drain.containers)
        floor_ends = time.monotonic() + drain.floor
        ctx.enter(Phase.DRAIN, rolling_back)
        self._say(drain)
        if drain.wait_unhealthy:
            if ctx.interrupts.count > 1 and not rolling_back:
                ctx.progress.warn("interrupted again: not waiting for the old containers to turn unhealthy")
            else:
                self._wait_unhealthy(drain.wait_unhealthy)
        # The floor holds whatever else happens: it is the proxy's reaction time, not a wait a user can skip.
        if drain.pause > 0:
            ctx.watch.hold(floor_ends - time.monotonic())
            ctx.progress.info(f"waiting {drain.pause:g}s after draining")
            ctx.watch.pause(drain.pause, interrupts_seen=ctx.further_interrupt())
            concurrently(last_looks)
        else:
            ctx.watch.hold(floor_ends - LAST_LOOKS_LEAD - time.monotonic())
            concurrently(last_looks)
            ctx.watch.hold(floor_ends - time.monotonic())

    def _say(self, drain: Drain) -> None:
        waited = "them" if drain.wait_unhealthy == drain.containers else names(drain.wait_unhealthy)
        until = f" and until Docker reports {waited} unhealthy" if drain.wait_unhealthy else ""
        self.ctx.progress.info(f"draining {names(drain.containers)}: {drain.floor:g}s (--drain-time){until}")

    def _run_pre_stop(self, containers: List[Container]) -> None:
        """The pre-stop command for every container at once; a failure is a warning, as in the original tool.
        Each is bounded (see PRE_STOP_MIN_TIMEOUT), and a further interrupt ends it, with all it started."""
        ctx = self.ctx
        timeout = max(ctx.options.healthcheck_timeout, PRE_STOP_MIN_TIMEOUT)
        env = ctx.docker.environment_for_user_commands()
        seen = ctx.further_interrupt()

        def one(container: Container) -> None:
            argv, shown = self._pre_stop_argv(container)
            ctx.progress.info(f"running pre-stop command for {container.name}: {shown}")
            try:
                result = ctx.docker.runner.run(argv, check=False, capture=True, timeout=timeout,
                                               cancel=lambda: ctx.interrupts.count > seen, env=env)
            except DockerCommandError as error:
                ctx.progress.warn(f"pre-stop command for {container.name} could not run: {error}")
                return
            for line in (result.stdout + result.stderr).strip().splitlines():
                ctx.progress.output("pre-stop", line, container.name)
            if result.ended == Ended.TIMEOUT:
                ctx.progress.warn(f"pre-stop command for {container.name} ran past {timeout:g}s: ended it")
            elif result.ended == Ended.CANCELLED:
                ctx.progress.warn(f"pre-stop command for {container.name} ended by a further interrupt")
            elif result.returncode != 0:
                ctx.progress.warn(f"pre-stop command for {container.name} exited with {result.returncode}")

        concurrently([lambda c=c: one(c) for c in containers])  # type: ignore[misc]

    def _pre_stop_argv(self, container: Container) -> Tuple[List[str], str]:
        """--pre-stop-exec runs inside the container (docker exec, through our own docker and its flags);
        --pre-stop-cmd through sh on this machine, with {id} filled in. The argv, and how to show it."""
        options = self.ctx.options
        shown = shown_pre_stop(options, container)
        if options.pre_stop_exec:
            return self.ctx.docker.docker("exec", container.id, *shlex.split(options.pre_stop_exec)), shown
        return ["sh", "-c", shown], shown

    def _wait_unhealthy(self, containers: List[Container]) -> None:
        ctx = self.ctx
        timeout = ctx.options.healthcheck_timeout
        ctx.progress.info(f"waiting up to {timeout:g}s for {names(containers)} to be unhealthy")
        # A further interrupt ends this wait early: the user wants out, and stopping is all that is left.
        outcome = ctx.watch.wait([c.id for c in containers], all_unhealthy, timeout,
                                 interrupts_seen=ctx.further_interrupt())
        if outcome.how == Ended.TIMEOUT:
            ctx.progress.warn(f"still healthy after {timeout:g}s; stopping anyway")
        elif outcome.done:
            ctx.progress.info(f"{names(containers)} unhealthy")


class Retirement:
    def __init__(self, ctx: DeployContext, strategy: Optional[DrainStrategy] = None) -> None:
        self.ctx = ctx
        self.strategy = strategy or HealthCheckDrain(ctx)

    def retire(self, containers: List[Container], rolling_back: bool,
               replacements: Sequence[Container] = ()) -> None:
        """Drain, then stop and remove. Old containers are stopped only while one of their `replacements` still
        serves."""
        ctx = self.ctx
        if not containers:
            return
        ctx.lock.verify()
        current = ctx.watch.known([c.id for c in containers])
        # Just before the stop, the last looks: the lock is still ours, and a new container still serves.
        last_looks: LastLooks = [ctx.lock.verify]
        if replacements:
            last_looks.append(lambda: self._check_replacements_serve(replacements, current))
        self.strategy.drain(current, rolling_back, last_looks)
        ctx.enter(Phase.RETIRE, rolling_back)
        self._stop_and_remove(current)

    def _check_replacements_serve(self, replacements: Sequence[Container], old: List[Container]) -> None:
        """Past the point of no return, the last moment to keep the old containers: if not one new container is
        healthy (or running, without a health check), stopping the old ones would leave nothing that can serve."""
        ctx = self.ctx
        now = ctx.watch.refresh([c.id for c in replacements])
        if any(serving(c) for c in now):
            return
        diagnose(ctx, [c.id for c in now])
        raise Incomplete(
            f"none of the new containers serves any more ({describe_states(now)}): the old containers "
            f"{names(old)} were drained but are not stopped; fix the new version, then run `docker reroll "
            f"{ctx.service}` again to finish (it replaces all of them), or undo the pre-stop command in the old "
            "containers to send them traffic again"
        )

    def _stop_and_remove(self, containers: List[Container]) -> None:
        ctx = self.ctx
        ids = [c.id for c in containers if c.status != Status.REMOVED]
        if not ids:
            return
        ctx.progress.info(f"stopping {names(containers)}")
        ctx.display.show(containers, mark=Shown.STOPPING)
        grace = max((c.stop_timeout or DEFAULT_STOP_TIMEOUT for c in containers), default=DEFAULT_STOP_TIMEOUT)
        try:
            ctx.docker.stop(ids, grace_seconds=grace)
        except DockerCommandError as error:
            ctx.progress.warn(f"docker stop: {error.failures()}")
        ctx.progress.info(f"removing {names(containers)}")
        try:
            ctx.docker.remove(ids)
        except DockerCommandError as error:
            raise DeployFailed(f"could not remove {names(containers)}: {error.failures()}") from None
        ctx.display.show(ctx.watch.removed(ids))

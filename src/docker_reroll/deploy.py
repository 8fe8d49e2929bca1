"""One service, from its old containers to its new ones: what to do in which order, and what a failure or an
interrupt means at each step.

    discover -> scale up (+K) -> wait until ready -> | pre-stop -> drain -> retire K old | -> next batch
                 ^-- failure or interrupt: roll back -^ | interrupt: finish this batch      |

Before a batch's first pre-stop command nothing old has been touched, so any failure or interrupt rolls that batch
back: its new containers are retired and the old ones keep serving. After it, the old containers may already be
leaving the proxy's pool, so the only safe way out of that batch is forward. With one batch (the default: all new
containers at once) that is the whole deploy; with several, batches.py says what a later failure does.

The plan (planning.plan_service, the same one a dry run prints) is made from what the engine shows once the lock is
held; this carries it out: rollout.py starts and checks new containers, retire.py drains and removes, batches.py
loops, readiness.py waits.
"""

from typing import List, Optional

from docker_reroll.batches import Batches
from docker_reroll.context import DeployContext, DeployReport
from docker_reroll.display import ContainerDisplay
from docker_reroll.engine import Engine
from docker_reroll.errors import DeployFailed, DockerCommandError, Incomplete, LockLost
from docker_reroll.facts import service_facts
from docker_reroll.interrupts import Interrupts
from docker_reroll.lock import EngineLock
from docker_reroll.model import Container, ServiceSpec
from docker_reroll.options import Options, settings_line
from docker_reroll.planning import ServicePlan, describe, names, plan_service
from docker_reroll.progress import Progress
from docker_reroll.proxy import Route
from docker_reroll.proxy_drain import ProxyControl, ProxyDrain
from docker_reroll.rendering import plan_facts
from docker_reroll.retire import Retirement
from docker_reroll.rollout import Rollout
from docker_reroll.vocabulary import Phase, Role
from docker_reroll.watch import ContainerWatch, WaitStats


class Deployment:
    def __init__(self, options: Options, service: str, spec: Optional[ServiceSpec], project: str, docker: Engine,
                 progress: Progress, interrupts: Interrupts, lock: EngineLock, route: Optional[Route] = None) -> None:
        self.options = options  # this service's: the command line over its labels and deploy.update_config
        self.service = service
        self.spec = spec
        self.project = project
        self.docker = docker
        self.progress = progress
        self.interrupts = interrupts
        self.lock = lock
        self.route = route  # proxy mode: how the proxy routes to the service
        self.report = DeployReport()
        self.wait_stats: Optional[WaitStats] = None
        self.plan: Optional[ServicePlan] = None  # as carried out
        self._ctx: Optional[DeployContext] = None

    @property
    def consistent(self) -> bool:
        """False while old and new containers both exist: lock and journal then stay for the next run."""
        return self._ctx is None or self._ctx.consistent

    def run(self) -> DeployReport:
        """The lock is taken by the caller (a release takes all of its locks first, in a fixed order)."""
        display = ContainerDisplay(self.progress, self.service)
        ctx = None
        try:
            self.progress.phase(Phase.PREPARE, self.service)
            with ContainerWatch(self.docker, self.project, self.service, self.interrupts,
                                on_change=display.changed) as watch:
                self.wait_stats = watch.stats
                ctx = self._ctx = DeployContext(self.service, self.project, self.spec, self.options, self.docker,
                                                self.progress, self.interrupts, self.lock, watch, display,
                                                self.report)
                self._deploy(ctx)
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
                keep = ctx is not None and ctx.keep_journal
                self.lock.release(keep_journal=keep or (self.lock.journal_inherited and not self.report.completed))
        return self.report

    def _deploy(self, ctx: DeployContext) -> None:
        self.progress.info(f"settings for {self.service}: {settings_line(self.options, self.route is not None)}")
        facts = service_facts(self.docker, self.spec, ctx.service_containers(), self.lock.journal)
        plan = self.plan = plan_service(self.service, self.spec, self.options, facts, self.route)
        ctx.options = plan.options  # a failure action that cannot be kept is the plan's to change
        self.progress.plan(plan_facts(plan, dry_run=False))
        for level, message in plan.messages:
            self.progress.say(level, message)
        proxy = ProxyControl(ctx, plan.route) if plan.route is not None else None
        if proxy is not None:
            proxy.attach()  # refused before any change if the proxy cannot be driven
            ctx.proxy = proxy
        self._remove_stale(ctx, plan.stale)
        ctx.check_interrupt()
        self.report.first_start = plan.first_start
        self.report.old = [c.id for c in plan.old]
        self.report.old_containers = list(plan.old)
        self.report.replicas = plan.replicas
        self.report.batches = len(plan.batches)
        ctx.display.show(plan.old, role=Role.OLD)
        if plan.first_start:
            self.progress.info(f"no running container of {self.service}: starting it")
        else:
            self.lock.write_journal(plan.replicas, [c.id for c in plan.old])
            self.progress.info(f"old containers: {describe(plan.old)}")
        ctx.consistent = False
        retirement = Retirement(ctx, ProxyDrain(ctx, proxy) if proxy is not None else None)
        batches = Batches(ctx, Rollout(ctx, retirement), retirement)
        try:
            if proxy is not None:
                proxy.route_to(plan.old)  # pinned: the new containers get no connection before they are ready
            new = batches.run(plan)
            if proxy is not None and plan.first_start:
                proxy.route_to(new)
            ctx.consistent = True
        finally:
            try:
                if proxy is not None and ctx.consistent:  # old or new only: Docker's DNS tells the truth again
                    proxy.rest()
                    self.report.cut_connections = dict(proxy.cut_connections)
            finally:
                if proxy is not None:
                    proxy.close()
        self.report.completed = not self.report.kept_old
        if self.report.kept_old:
            batches.stop(f"{len(self.report.kept_old)} old container(s) kept in place of new ones that failed "
                         "(tolerated by failure_action/max_failure_ratio)", new)
        self.progress.info(f"deployed {self.service}: {len(new)} container(s) serving: {describe(new)}")

    def _remove_stale(self, ctx: DeployContext, stale: List[Container]) -> None:
        """Exited, dead or never-started containers: compose would count them toward --scale, and they could
        outlive the deploy."""
        if not stale:
            return
        self.progress.info(f"removing stopped containers: {names(stale)}")
        ctx.display.show(stale, role=Role.STALE)
        try:
            self.docker.remove([c.id for c in stale])
        except DockerCommandError as error:
            raise DeployFailed(f"could not remove stopped containers: {error.failures()}") from None

"""A release of a compose project: the services named on the command line, in that order, or with --all the whole
project in dependency order, each one rolled as a `Deployment` (or left to compose, or skipped, as planned).

Before anything changes: every service is planned (release_planning.py: a refusal changes nothing) with its own
settings, the plan is printed, and the locks of all services that will change are taken in one fixed order (by
name), so two releases of one project cannot deadlock. Then the steps run in turn; the first failure stops the
release (that service is rolled back by its deployment, those before it stay deployed, those after it are not
touched), and an interrupt ends the service in flight by the one-service rules and stops before the next.
"""

from typing import Dict, List, Optional

from docker_reroll.deploy import Deployment
from docker_reroll.dryrun import DryRun, refused_plan
from docker_reroll.engine import Engine
from docker_reroll.errors import EXIT_OK, Interrupted, RefusedError, RerollError, UsageError
from docker_reroll.interrupts import Interrupts, signal_name
from docker_reroll.lock import EngineLock
from docker_reroll.model import Container, ProjectConfig
from docker_reroll.options import Options
from docker_reroll.progress import Progress
from docker_reroll.proxy import Route, plan_routes
from docker_reroll.release_planning import ReleaseFacts, Step, plan_release
from docker_reroll.summary import Outcomes
from docker_reroll.vocabulary import Action, Phase, Result


class ReleaseRun:
    """What a compose release and a Swarm one share: the settings per service, the locks, the outcomes."""

    def __init__(self, options: Options, docker: Engine, progress: Progress, interrupts: Interrupts,
                 command_line: str) -> None:
        self.options = options
        self.docker = docker
        self.progress = progress
        self.interrupts = interrupts
        self.command_line = command_line
        self.outcomes = Outcomes()
        self.planned: List[str] = []  # the services the release would change, in order
        self.locks: Dict[str, EngineLock] = {}
        self.service_options: Dict[str, Options] = {}  # per service: the command line, then its compose file

    def run(self) -> int:
        """Deploy; returns the exit code of a dry run, else EXIT_OK (every failure raises)."""
        raise NotImplementedError

    @property
    def consistent(self) -> bool:
        """False when a service was left half-way (old and new containers; its lock and journal stay)."""
        return True

    def details(self, service: str) -> Dict[str, object]:
        """What the summary says a service became besides its result: its old and new containers or tasks."""
        return {}

    def options_for(self, project: Optional[ProjectConfig], service: str) -> Options:
        """The command line's options for one service, filled in from its labels and deploy.update_config."""
        spec = project.services.get(service) if project is not None else None
        if spec is None:
            return self.options
        try:
            return self.options.for_service(service, spec.update_config, spec.labels)
        except ValueError as error:
            raise RefusedError(f"service '{service}': {error}") from None

    def take_locks(self, project: str, services: List[str]) -> None:
        for service in sorted(services):  # one order for every release: no two can wait for each other
            lock = EngineLock(self.docker, project, service, self.progress, self.command_line)
            lock.acquire(self.options.lock_timeout, self.interrupts)
            self.locks[service] = lock

    def stop_if_interrupted(self, service: str) -> None:
        signum = self.interrupts.first_signal
        if signum is not None:
            raise Interrupted(f"interrupted by {signal_name(signum)}: stopped before {service}", signum,
                              rolled_back=False)

    def refused_in_dry_run(self, error: RefusedError) -> None:
        if self.options.dry_run:
            refused_plan(self.progress, error)


class Release(ReleaseRun):
    def __init__(self, options: Options, docker: Engine, progress: Progress, interrupts: Interrupts,
                 command_line: str, project: ProjectConfig) -> None:
        super().__init__(options, docker, progress, interrupts, command_line)
        self.project = project
        self.steps: List[Step] = []
        self.deployments: List[Deployment] = []
        self.routes: Dict[str, Route] = {}

    @property
    def consistent(self) -> bool:
        return all(d.consistent for d in self.deployments)

    def details(self, service: str) -> Dict[str, object]:
        report = next((d.report for d in reversed(self.deployments) if d.service == service), None)
        if report is None:
            return {}
        cut = {"cut_connections": dict(report.cut_connections)} if report.cut_connections else {}  # proxy mode
        return {"old": [_brief(c) for c in report.old_containers], "new": [_brief(c) for c in report.new_containers],
                **cut}

    def run(self) -> int:
        project = self.project
        try:
            self.steps = steps = self._plan()
            # a bad label or update_config refuses the release before its first service changes
            self.service_options = {s.service: self.options_for(project, s.service) for s in steps
                                    if s.action == Action.ROLL}
        except RefusedError as error:
            self.refused_in_dry_run(error)
            raise
        self.planned = [s.service for s in steps]
        self.routes = plan_routes(project)  # proxy mode: a bad label refuses the release before any change
        if self.options.dry_run:
            return DryRun(self.options, self.docker, self.progress, self.command_line).run(
                project, steps, self.service_options, self.routes)
        if len(steps) > 1 or self.options.all or any(s.action != Action.ROLL or s.warnings for s in steps):
            self._say_plan(steps)
        try:
            self.take_locks(project.name, [s.service for s in steps if s.action != Action.SKIP])
            for step in steps:
                self._run_step(step)
        except BaseException as error:
            self.outcomes.finish(error, self.planned)
            raise
        finally:
            for lock in self.locks.values():  # the services not reached; a deployment releases its own
                if lock.held and not any(d.lock is lock and not d.consistent for d in self.deployments):
                    lock.release(keep_journal=lock.journal_inherited)  # an earlier deploy's, for the next run
        return EXIT_OK

    def _plan(self) -> List[Step]:
        project, options = self.project, self.options
        unknown = [s for s in options.scale if s not in project.services]
        if options.all and unknown:
            raise UsageError(f"--scale names {', '.join(unknown)}, which the project does not define")
        named = None if options.all else options.services
        profiles = self.docker.services_in_any_profile() if named and any(
            s not in project.services for s in named) else []
        legacy = any(not spec.known for spec in project.services.values())
        # a named service's containers matter here only to compose v1, whose labels they show
        containers = self._containers_by_service() if options.all or legacy else {}
        hashes = self.docker.config_hashes() if options.all else {}
        images = sorted({c.image for found in containers.values() for c in found if c.image}) if options.all else []
        facts = ReleaseFacts(containers, hashes, self.docker.image_ids(images))
        return plan_release(project, facts, options.scale, named, profiles)

    def _containers_by_service(self) -> Dict[str, List[Container]]:
        found: Dict[str, List[Container]] = {}
        for container in self.docker.project_containers(self.project.name):
            found.setdefault(container.service, []).append(container)
        return found

    def _say_plan(self, steps: List[Step]) -> None:
        self.progress.info("plan:")
        width = max(len(s.service) for s in steps) if steps else 0
        for step in steps:
            self.progress.info(f"  {step.service:<{width}}  {step.action.value:<8}  {step.reason}")
        for step in steps:
            for warning in step.warnings:
                self.progress.warn(warning)

    def _run_step(self, step: Step) -> None:
        self.stop_if_interrupted(step.service)
        if step.action == Action.SKIP:
            self.outcomes.done(step.service, Result.SKIPPED)
            return
        lock = self.locks[step.service]
        if step.action == Action.RECREATE:
            self.outcomes.start(step.service)
            self._recreate(step, lock)
            return
        if len(self.options.services) > 1 or self.options.all:
            self.progress.info(f"deploying {step.service}")
        deployment = Deployment(self.service_options[step.service], step.service,
                                self.project.services[step.service], self.project.name, self.docker, self.progress,
                                self.interrupts, lock, self.routes.get(step.service))
        self.deployments.append(deployment)
        self.outcomes.start(step.service, lambda: deployment.consistent)
        deployment.run()
        self.outcomes.done(step.service, Result.DEPLOYED)

    def _recreate(self, step: Step, lock: EngineLock) -> None:
        """Compose's own stop-then-start. It is not cut short by the first interrupt, which would leave the service
        stopped: the release stops after it; a second interrupt stops compose too."""
        self.progress.phase(Phase.RECREATE, step.service)
        self.progress.info(f"recreating {step.service} with compose (`docker compose up -d --no-deps "
                           f"{step.service}`): {step.reason}")
        lock.verify()
        try:
            self.docker.compose_up(step.service, scale=self.options.scale.get(step.service), no_deps=True,
                                   cancel=lambda: self.interrupts.count > 1, recreate=True,
                                   on_line=self.progress.compose_output)
        except RerollError as error:
            signum = self.interrupts.first_signal
            if signum is None:
                raise
            raise Interrupted(f"interrupted by {signal_name(signum)} while compose recreated {step.service}: "
                              f"{error}; check it with `docker compose ps {step.service}`", signum,
                              rolled_back=False) from None
        lock.release()
        self.outcomes.done(step.service, Result.RECREATED)


def _brief(container: Container) -> Dict[str, str]:
    return {"id": container.id, "name": container.name, "image": container.image}

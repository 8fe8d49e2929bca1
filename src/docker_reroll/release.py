"""A release: the services named on the command line, in that order, or with --all the whole project in dependency
order, each one rolled as a `Deployment` (or left to compose, or skipped, as planned).

Before anything changes: every named service is checked (a refusal changes nothing), the plan is printed, and the
locks of all services that will change are taken in one fixed order (by name), so two releases of one project
cannot deadlock. Then the steps run in turn; the first failure stops the release (that service is rolled back by
its deployment, those before it stay deployed, those after it are not touched), and an interrupt ends the service
in flight by the one-service rules and stops before the next. A summary says what happened to each.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Union

from docker_reroll.deploy import Deployment
from docker_reroll.dryrun import DryRun, refused_plan
from docker_reroll.engine import Docker
from docker_reroll.errors import (
    EXIT_DEPLOY_FAILED,
    EXIT_INCOMPLETE,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_SIGNAL_BASE,
    EXIT_USAGE,
    Interrupted,
    LockedError,
    RefusedError,
    RerollError,
    UsageError,
)
from docker_reroll.interrupts import Interrupts, signal_name
from docker_reroll.lock import EngineLock
from docker_reroll.model import Container, ProjectConfig
from docker_reroll.options import Options
from docker_reroll.planning import RECREATE, ROLL, SKIP, ReleaseFacts, Step, plan_release
from docker_reroll.progress import Progress
from docker_reroll.swarm import SWARM_ENDINGS, SwarmDeployment, SwarmEngine, check_swarm_options


@dataclass
class Outcome:
    service: str
    result: str  # deployed, recreated, skipped, failed, interrupted, not started


class Release:
    def __init__(self, options: Options, docker: Docker, progress: Progress, interrupts: Interrupts,
                 command_line: str) -> None:
        self.options = options
        self.docker = docker
        self.progress = progress
        self.interrupts = interrupts
        self.command_line = command_line
        self.deployments: List[Deployment] = []
        self.swarm_deployments: List[SwarmDeployment] = []
        self.steps: List[Step] = []
        self.outcomes: List[Outcome] = []
        self._locks: Dict[str, EngineLock] = {}
        self._options: Dict[str, Options] = {}  # per service rolled: the command line, then its compose file
        self._in_flight: Optional[str] = None  # the service being changed now
        self._flight: Optional[Union[Deployment, SwarmDeployment]] = None  # its deployment (none for a recreate)

    @property
    def consistent(self) -> bool:
        """False when a service was left half-way (old and new containers; its lock and journal stay)."""
        return all(d.consistent for d in self.deployments) and all(d.consistent for d in self.swarm_deployments)

    def run(self) -> int:
        """Deploy; returns the exit code of a dry run, else EXIT_OK (every failure raises)."""
        try:
            project, stack = self._target()
        except RefusedError as error:
            if self.options.dry_run:
                refused_plan(self.progress, error)
            raise
        if stack is not None:
            return self._run_swarm(stack, project)
        assert project is not None
        try:
            self.steps = steps = self._plan(project)
            # a bad label or update_config refuses the release before its first service changes
            self._options = {s.service: self._options_for(project, s.service) for s in steps if s.action == ROLL}
        except RefusedError as error:
            if self.options.dry_run:
                refused_plan(self.progress, error)
            raise
        if self.options.dry_run:
            return DryRun(self.options, self.docker, self.progress, self.command_line).run(project, steps,
                                                                                             self._options)
        if len(steps) > 1 or self.options.all or any(s.action != ROLL or s.warnings for s in steps):
            self._say_plan(steps)
        try:
            self._take_locks(project.name, [s.service for s in steps if s.action != SKIP])
            for step in steps:
                self._run_step(project, step)
        except BaseException as error:
            self._finish_outcomes(error)
            raise
        finally:
            for lock in self._locks.values():  # the services not reached; a deployment releases its own
                if lock.held and not any(d.lock is lock and not d.consistent for d in self.deployments):
                    lock.release(keep_journal=lock.journal_inherited)  # an earlier deploy's, for the next run
        return EXIT_OK

    # -- compose or Swarm

    def _target(self) -> "tuple[Optional[ProjectConfig], Optional[str]]":
        """The compose project, or the Swarm stack whose service to deploy: --stack (or DOCKER_REROLL_STACK), else
        a stack that has the services when the compose project (if there is one) does not. `--stack ''` is the
        compose project, whatever stacks there are."""
        if self.options.stack:
            return self._stack_file(), self.options.stack
        try:
            project: Optional[ProjectConfig] = self.docker.load_project()
        except RefusedError as error:
            project, load_error = None, error
        missing = [s for s in self.options.services if project is None or s not in project.services]
        if missing and not self.options.all and self.options.stack is None:
            stack = self._stack_with(missing)
            if stack is not None:
                return project, stack
        if project is None:
            raise load_error
        if self.options.image:
            raise RefusedError("--image applies to a Swarm stack service (--stack); a compose service takes its "
                               "image from the compose file")
        if self.options.stack is None:
            self._refuse_if_a_stack_is_meant(project)
        return project, None

    def _refuse_if_a_stack_is_meant(self, project: ProjectConfig) -> None:
        """A compose file here that names the service, none of whose containers run, and a Swarm stack that has
        it (`docker stack deploy -c compose.yaml shop` from this directory): deploying the compose service would
        start it beside the stack, so the user says which (--all always means the compose project)."""
        idle = [s for s in self.options.services if not self.docker.service_container_ids(project.name, s)]
        engine = SwarmEngine(self.docker)
        if not idle or not engine.is_manager():
            return
        for service in idle:
            stacks = sorted(name[:-len(service) - 1] for name in engine.stack_services(service))
            if stacks:
                raise RefusedError(
                    f"'{service}' is both a service of the compose project {project.name}, which runs no container "
                    f"of it, and of the Swarm stack{'s' if len(stacks) > 1 else ''} {', '.join(stacks)}: say which, "
                    f"`--stack {stacks[0]}` for the Swarm service, `--stack ''` for the compose project")

    def _stack_file(self) -> Optional[ProjectConfig]:
        """With a stack: the compose file that gives the new config, -f's, else the one compose finds here, if
        any (none: the service's current config, its tasks replaced)."""
        try:
            return self.docker.load_project()
        except RefusedError:
            if self.options.files:
                raise
            return None

    def _stack_with(self, services: List[str]) -> Optional[str]:
        engine = SwarmEngine(self.docker)
        if not engine.is_manager():
            return None
        stacks = {name[:-len(s) - 1] for s in services for name in engine.stack_services(s)}
        if len(stacks) > 1:
            raise RefusedError(f"the stacks {', '.join(sorted(stacks))} all have {', '.join(services)}: choose one "
                               "with --stack")
        if stacks and all(engine.stack_services(s) for s in services):
            return stacks.pop()
        return None

    def _run_swarm(self, stack: str, project: Optional[ProjectConfig]) -> int:
        try:
            if self.options.all:
                raise RefusedError("--all deploys a compose project; a stack is deployed with `docker stack deploy`")
            self._options = {s: self._options_for(project, s) for s in self.options.services}
            for service, options in self._options.items():  # every option that cannot apply, before any change
                check_swarm_options(service, options)
        except RefusedError as error:
            if self.options.dry_run:
                refused_plan(self.progress, error)
            raise
        engine = SwarmEngine(self.docker)
        if self.options.dry_run:
            return DryRun(self.options, self.docker, self.progress, self.command_line).run_swarm(
                stack, self._options, engine, lambda service: self._new_swarm_config(service, project))
        self.steps = [Step(s, ROLL, f"Swarm service {stack}_{s}") for s in self.options.services]
        try:
            self._take_locks(stack, self.options.services)
            deployments = [SwarmDeployment(self._options[s], f"{stack}_{s}", s, engine, self.progress,
                                           self.interrupts, self._locks[s], self._new_swarm_config(s, project))
                           for s in self.options.services]
            for deployment in deployments:  # every service refused or locked before the first update
                self._in_flight = deployment.service
                deployment.check()
            self._in_flight = None
            for deployment in deployments:
                self._run_swarm_service(deployment)
        except BaseException as error:
            self._finish_outcomes(error)
            raise
        finally:
            for lock in self._locks.values():
                lock.release()
        return EXIT_OK

    def _new_swarm_config(self, service: str, project: Optional[ProjectConfig]
                          ) -> "tuple[Optional[str], Optional[Dict[str, str]]]":
        """--image; else the image and environment the compose file gives the service; else none (the current
        config, its tasks replaced)."""
        if self.options.image is not None:
            return self.options.image, None
        if project is not None and service in project.services:
            spec = project.services[service]
            return spec.image or None, dict(spec.environment)
        return None, None

    def _run_swarm_service(self, deployment: SwarmDeployment) -> None:
        self._stop_if_interrupted(deployment.service)
        self.swarm_deployments.append(deployment)
        self._in_flight, self._flight = deployment.service, deployment
        deployment.run(deployment.check())
        self._done(deployment.service, "deployed")

    def _options_for(self, project: Optional[ProjectConfig], service: str) -> Options:
        """The command line's options for one service, filled in from its labels and deploy.update_config."""
        spec = project.services.get(service) if project is not None else None
        if spec is None:
            return self.options
        try:
            return self.options.for_service(service, spec.update_config, spec.labels)
        except ValueError as error:
            raise RefusedError(f"service '{service}': {error}") from None

    # -- planning

    def _plan(self, project: ProjectConfig) -> List[Step]:
        unknown = [s for s in self.options.scale if s not in project.services]
        if self.options.all and unknown:
            raise UsageError(f"--scale names {', '.join(unknown)}, which the project does not define")
        named = None if self.options.all else self.options.services
        profiles = self.docker.services_in_any_profile() if named and any(
            s not in project.services for s in named) else []
        legacy = any(not spec.known for spec in project.services.values())
        # a named service's containers matter here only to compose v1, whose labels they show
        containers = self._containers_by_service(project) if self.options.all or legacy else {}
        hashes = self.docker.config_hashes() if self.options.all else {}
        images = sorted({c.image for found in containers.values() for c in found if c.image}) \
            if self.options.all else []
        facts = ReleaseFacts(containers, hashes, self.docker.image_ids(images))
        return plan_release(project, facts, self.options.scale, named, profiles)

    def _containers_by_service(self, project: ProjectConfig) -> Dict[str, List[Container]]:
        found: Dict[str, List[Container]] = {}
        for container in self.docker.project_containers(project.name):
            found.setdefault(container.service, []).append(container)
        return found

    def _say_plan(self, steps: List[Step]) -> None:
        self.progress.info("plan:")
        width = max(len(s.service) for s in steps) if steps else 0
        for step in steps:
            self.progress.info(f"  {step.service:<{width}}  {step.action:<8}  {step.reason}")
        for step in steps:
            for warning in step.warnings:
                self.progress.warn(warning)

    def _take_locks(self, project: str, services: List[str]) -> None:
        for service in sorted(services):  # one order for every release: no two can wait for each other
            lock = EngineLock(self.docker, project, service, self.progress, self.command_line)
            lock.acquire(self.options.lock_timeout, self.interrupts)
            self._locks[service] = lock

    # -- running

    def _run_step(self, project: ProjectConfig, step: Step) -> None:
        self._stop_if_interrupted(step.service)
        if step.action == SKIP:
            self._done(step.service, "skipped (up to date)")
            return
        lock = self._locks[step.service]
        self._in_flight = step.service
        if step.action == RECREATE:
            self._recreate(step, lock)
            return
        if len(self.options.services) > 1 or self.options.all:
            self.progress.info(f"deploying {step.service}")
        deployment = Deployment(self._options[step.service], step.service, project.services[step.service],
                                project.name, self.docker, self.progress, self.interrupts, lock)
        self.deployments.append(deployment)
        self._flight = deployment
        deployment.run()
        self._done(step.service, "deployed")

    def _recreate(self, step: Step, lock: EngineLock) -> None:
        """Compose's own stop-then-start. It is not cut short by the first interrupt, which would leave the service
        stopped: the release stops after it; a second interrupt stops compose too."""
        self.progress.phase("recreate", step.service)
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
        self._done(step.service, "recreated")

    def _stop_if_interrupted(self, service: str) -> None:
        signum = self.interrupts.first_signal
        if signum is not None:
            raise Interrupted(f"interrupted by {signal_name(signum)}: stopped before {service}", signum,
                              rolled_back=False)

    def _done(self, service: str, result: str) -> None:
        self.outcomes.append(Outcome(service, result))
        self._in_flight, self._flight = None, None

    def _finish_outcomes(self, error: BaseException) -> None:
        """The service in flight failed, was refused or was interrupted; the rest were not started."""
        in_flight = self._in_flight
        if in_flight and isinstance(error, (RefusedError, LockedError)):  # refused before it changed anything
            self.outcomes.append(Outcome(in_flight, "refused" if isinstance(error, RefusedError) else "locked"))
        elif in_flight:
            # rolled back: the deployment left the service consistent, on what ran before (not a mix, not paused)
            rolled_back = isinstance(error, RerollError) and error.rolled_back and self._flight is not None \
                and self._flight.consistent
            word = "interrupted" if isinstance(error, Interrupted) else "failed"
            state = error.service_state if isinstance(error, RerollError) else ""  # what Swarm says, if it did
            note = state or ("rolled back" if rolled_back else "")
            self.outcomes.append(Outcome(in_flight, f"{word}{f' ({note})' if note else ''}"))
        done = {o.service for o in self.outcomes}
        for step in self.steps:
            if step.service not in done:
                self.outcomes.append(Outcome(step.service, "not started"))

    # -- the summary

    def summary(self, code: int, seconds: float) -> "tuple[str, str, List[Dict[str, object]]]":
        """The one line every mode ends with, the outcome in a word, and what each service became."""
        outcome = outcome_word(code, self.outcomes, self.options.dry_run)
        services: List[Dict[str, object]] = []
        for result in self.outcomes:
            facts: Dict[str, object] = {"service": result.service, "result": result.result}
            report = next((d.report for d in reversed(self.deployments) if d.service == result.service), None)
            if report is not None:
                facts["old"] = [_brief(c) for c in report.old_containers]
                facts["new"] = [_brief(c) for c in report.new_containers]
            swarm = next((d for d in self.swarm_deployments if d.service == result.service), None)
            if swarm is not None:
                facts["old"] = [{"id": t.id, "name": f"{swarm.name}.{t.slot}", "image": t.reference}
                                for t in swarm.old_tasks]
                facts["new"] = [{"id": t.id, "name": f"{swarm.name}.{t.slot}", "image": t.reference}
                                for t in swarm.new_tasks]
                facts["update_state"] = swarm.final_state
            services.append(facts)
        said = "; ".join(f"{o.service} {o.result}" for o in self.outcomes)
        if self.options.dry_run:
            said = outcome
        elif not said:
            said = outcome + ("; nothing was changed" if code in (EXIT_USAGE, EXIT_REFUSED, EXIT_LOCKED) else "")
        return f"summary: {said}; exit {code} after {seconds:.1f}s", outcome, services


def outcome_word(code: int, outcomes: List[Outcome], dry_run: bool) -> str:
    if dry_run:
        return "dry run" + {EXIT_OK: "", EXIT_REFUSED: ": refused", EXIT_LOCKED: ": locked"}.get(code, ": failed")
    if code >= EXIT_SIGNAL_BASE:
        return "interrupted"
    if code == EXIT_DEPLOY_FAILED and any("rolled back" in o.result for o in outcomes):
        return "rolled back"
    swarm_ending = next((e for o in outcomes for e in SWARM_ENDINGS if o.result == f"failed ({e})"), None)
    if code == EXIT_DEPLOY_FAILED and swarm_ending:
        return swarm_ending  # what Swarm left the service in: paused, rollback paused, ...
    return {EXIT_OK: "deployed", EXIT_DEPLOY_FAILED: "failed", EXIT_USAGE: "usage error", EXIT_REFUSED: "refused",
            EXIT_LOCKED: "locked", EXIT_INCOMPLETE: "incomplete"}.get(code, "failed")


def _brief(container: Container) -> Dict[str, str]:
    return {"id": container.id, "name": container.name, "image": container.image}

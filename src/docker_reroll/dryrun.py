"""`--dry-run`: what a release would do, worked out from the engine's state by the same planning functions the
deploy uses, and nothing changed: no lock taken, no journal written, no container or compose call that changes
anything (only `ps`, `inspect` and `compose config`).

The result is a plan event: its `lines` say it in words (plain and tty show them), the rest is its structure (JSON).
Exit 0 when the deploy could proceed, 3 when it would be refused, 4 when another deploy holds a service's lock.
"""

from typing import Callable, Dict, List, Mapping, Optional, Sequence

from docker_reroll.engine import Docker
from docker_reroll.errors import EXIT_LOCKED, EXIT_OK, EXIT_REFUSED, RefusedError
from docker_reroll.lock import EngineLock
from docker_reroll.model import Container, Journal, ProjectConfig, ServiceSpec, stale
from docker_reroll.options import Options, describe_settings
from docker_reroll.planning import (
    RECREATE,
    SKIP,
    Step,
    check_history,
    describe_batches,
    names,
    plan_batches,
    plan_deploy,
    plan_drain,
    replica_target,
    shown_pre_stop,
)
from docker_reroll.progress import Progress
from docker_reroll.swarm import IN_PROGRESS, SwarmEngine, describe_update, plan_swarm_update, refusal_for


class DryRun:
    def __init__(self, options: Options, docker: Docker, progress: Progress, command_line: str) -> None:
        self.options = options
        self.docker = docker
        self.progress = progress
        self.command_line = command_line
        self.lines: List[str] = []
        self.exit_code = EXIT_OK

    def run(self, project: ProjectConfig, steps: Sequence[Step], options: Mapping[str, Options]) -> int:
        """`options`: each rolled service's own, as the deploy would resolve them."""
        self.lines.append(f"dry run: nothing is changed; project {project.name}")
        services = [self._step(project, step, options.get(step.service, self.options)) for step in steps]
        verdict = {EXIT_OK: "the deploy can proceed", EXIT_REFUSED: "the deploy would be refused",
                   EXIT_LOCKED: "another deploy holds a lock: this one would wait or exit 4"}[self.exit_code]
        self.lines.append(verdict)
        self.progress.plan({"dry_run": True, "project": project.name, "exit_code": self.exit_code,
                            "services": services, "lines": self.lines})
        return self.exit_code

    def run_swarm(self, stack: str, services: Mapping[str, Options], engine: SwarmEngine,
                  new_config: Callable[[str], "tuple[Optional[str], Optional[Dict[str, str]]]"]) -> int:
        """The same for a Swarm stack (`services`: each with its options): the update docker-reroll would ask
        Swarm for, and what would stop it."""
        self.lines.append(f"dry run: nothing is changed; Swarm stack {stack}")
        facts = [self._swarm_service(stack, service, options, engine, new_config(service))
                 for service, options in services.items()]
        self.lines.append({EXIT_OK: "the deploy can proceed", EXIT_REFUSED: "the deploy would be refused",
                           EXIT_LOCKED: "another deploy is at work: this one would exit 4"}[self.exit_code])
        self.progress.plan({"dry_run": True, "project": stack, "stack": stack, "exit_code": self.exit_code,
                            "services": facts, "lines": self.lines})
        return self.exit_code

    def _swarm_service(self, stack: str, service: str, options: Options, engine: SwarmEngine,
                       config: "tuple[Optional[str], Optional[Dict[str, str]]]") -> Dict[str, object]:
        say = self.lines.append
        name = f"{stack}_{service}"
        facts: Dict[str, object] = {"service": service, "swarm_service": name}
        current = engine.inspect(name)
        refusal = refusal_for(name, current, options.scale.get(service))
        if refusal or current is None:
            facts["refused"] = refusal
            say(f"{service}: refused: {refusal}")
            self._worst(EXIT_REFUSED)
            return facts
        plan = plan_swarm_update(options, current, *config, options.scale.get(service))
        tasks = [t for t in engine.tasks(name) if t.desired == "running"]
        facts.update(image=current.image, replicas=current.replicas, update_state=current.update_state,
                     args=plan.shown_args, changes=plan.changes, deadline=plan.deadline,
                     settings=[{"setting": n, "value": v, "source": s} for n, v, s in plan.settings],
                     warnings=plan.warnings,
                     tasks=[{"id": t.id, "slot": t.slot, "state": t.state, "image": t.reference} for t in tasks])
        say(f"{service}: Swarm service {name}, {current.replicas} replica(s) of {current.image}")
        say(f"  tasks: {', '.join(f'{name}.{t.slot} ({t.id[:12]}) {t.state}' for t in tasks) or 'none'}")
        say(f"  change: {'; '.join(plan.changes)}")
        say(f"  update settings: {describe_update(plan)}")
        for warning in plan.warnings:
            say(f"  {warning}")
        say(f"  `docker service update --detach {' '.join(plan.shown_args)} {name}`, followed for up to "
            f"{plan.deadline:g}s, then rolled back")
        self._look_at_lock(stack, service, options, facts)  # the same engine lock as a compose service's
        if current.update_state in IN_PROGRESS:
            say(f"  Swarm is updating it now ({current.update_state} since {current.update_started}): exit 4")
            self._worst(EXIT_LOCKED)
        return facts

    def _step(self, project: ProjectConfig, step: Step, options: Options) -> Dict[str, object]:
        say = self.lines.append
        say(f"{step.service}: {step.action} ({step.reason})")
        facts: Dict[str, object] = {"service": step.service, "action": step.action, "reason": step.reason,
                                    "warnings": list(step.warnings)}
        for warning in step.warnings:
            say(f"  warning: {warning}")
        if step.action == SKIP:
            return facts
        if step.action == RECREATE:
            say(f"  `docker compose up -d --no-deps {step.service}` recreates it (stop, then start)")
            self._look_at_lock(project.name, step.service, options, facts)
            return facts
        spec = project.services[step.service]
        facts["settings"] = [{"setting": f, "value": v, "source": s} for f, v, s in describe_settings(options)]
        say("  settings: " + ", ".join(f"{f} {v} ({s})" for f, v, s in describe_settings(options)))
        journal = self._look_at_lock(project.name, step.service, options, facts)
        containers = [c for c in self.docker.inspect(self.docker.service_container_ids(project.name, step.service))
                      if not c.oneoff]
        running = [c for c in containers if not stale(c)]
        scale = options.scale.get(step.service)
        plan = plan_deploy(containers, journal, replica_target(scale, journal, spec.replicas, len(running)))
        facts.update(containers=[_container(c) for c in plan.old], stale=[_container(c) for c in plan.stale],
                     replicas=plan.replicas, journal=vars(journal) if journal else None)
        say(f"  containers: {_states(plan.old)}")
        if plan.stale:
            say(f"  stale, removed first: {_states(plan.stale)}")
        if journal is not None:
            say(f"  an interrupted deploy left its journal ({journal.replicas} replica(s) before it): this run "
                "would finish it")
        try:
            check_history(step.service, plan.old, journal, scale)
        except RefusedError as error:
            facts["refused"] = str(error)
            say(f"  refused: {error}")
            self._worst(EXIT_REFUSED)
            return facts
        self._rollout(step.service, spec, options, plan.old, plan.replicas, facts)
        return facts

    def _look_at_lock(self, project: str, service: str, options: Options, facts: Dict[str, object]
                      ) -> Optional[Journal]:
        """The service's lock as the deploy would find it; returns the journal an interrupted deploy left."""
        say = self.lines.append
        lock = EngineLock(self.docker, project, service, self.progress, self.command_line)
        holder, stale_reason, journal = lock.look()
        facts["lock"] = {"name": lock.name, "holder": holder, "stale": stale_reason}
        if holder is None:
            say(f"  lock: {lock.name} (free: it would be taken)")
        elif stale_reason:
            say(f"  lock: {lock.name} is held by {holder}, which is gone ({stale_reason}): it would be taken over")
        else:
            say(f"  lock: {lock.name} is held by {holder}: this deploy would wait for it (--lock-timeout "
                f"{options.lock_timeout:g}s), then exit 4")
            self._worst(EXIT_LOCKED)
        return journal

    def _rollout(self, service: str, spec: ServiceSpec, options: Options, old: List[Container], replicas: int,
                 facts: Dict[str, object]) -> None:
        say = self.lines.append
        if not old:
            say(f"  no container runs: `docker compose up -d` would start {replicas or 1} (with its dependencies)")
            return
        batches = plan_batches(len(old), replicas, options.max_surge)
        facts["batches"] = [{"start": b.start, "retire": b.retire} for b in batches]
        scale_to = len(old) + batches[0].start
        say(f"  scale: {len(old)} -> {scale_to} (`docker compose up -d --no-deps --no-recreate --scale "
            f"{service}={scale_to} {service}`), then {replicas} on the new config")
        if len(batches) > 1:
            say(f"  {describe_batches(options, len(batches))}")
        healthcheck = spec.healthcheck if spec.healthcheck is not None else \
            self.docker.image_has_healthcheck(spec.image) if spec.image else None
        facts["healthcheck"] = healthcheck
        healthy = f"wait up to {options.healthcheck_timeout:g}s for every new container to be healthy, then " \
                  f"{options.wait_after_healthy:g}s more"
        plain = f"wait {options.wait:g}s, then check that the new containers still run"
        if healthcheck is None:
            say(f"  new containers: the image is not on the engine yet: with a health check, {healthy}; "
                f"without, {plain}")
        else:
            say(f"  new containers: {healthy}" if healthcheck else f"  new containers (no health check): {plain}")
        drain = plan_drain(old, options, rolling_back=False)
        facts["pre_stop"] = [{"container": c.name, "command": shown_pre_stop(options, c)}
                             for c in drain.containers if drain.pre_stop]
        for container in drain.containers if drain.pre_stop else []:
            say(f"  pre-stop for {container.name}: {shown_pre_stop(options, container)}")
        if drain.draining:
            until = f" and until Docker reports {names(drain.wait_unhealthy)} unhealthy (up to " \
                    f"{options.healthcheck_timeout:g}s)" if drain.wait_unhealthy else ""
            say(f"  drain: keep them running {drain.floor:g}s after the pre-stop command{until}, then "
                f"{drain.pause:g}s more; then stop and remove them")
        else:
            say(f"  no pre-stop command: {names(old)} are stopped as soon as the new containers are ready")
        for note in drain.notes + drain.warnings:
            say(f"  {note}")

    def _worst(self, code: int) -> None:
        order = (EXIT_OK, EXIT_LOCKED, EXIT_REFUSED)  # a refusal outranks a lock: waiting would not help
        self.exit_code = max(self.exit_code, code, key=order.index)


def _container(container: Container) -> Dict[str, object]:
    return {"id": container.id, "name": container.name, "status": container.status, "health": container.health,
            "image": container.image}


def _states(containers: Sequence[Container]) -> str:
    return ", ".join(f"{c.name} ({c.short_id}, {c.image}) {c.health or c.status}" for c in containers) or "none"


def refused_plan(progress: Progress, error: RefusedError) -> Optional[int]:
    """A refusal found before any service could be looked at (no such service, a profile): the plan says so."""
    progress.plan({"dry_run": True, "exit_code": EXIT_REFUSED, "services": [], "refused": str(error),
                   "lines": [f"dry run: the deploy would be refused: {error}"]})
    return EXIT_REFUSED

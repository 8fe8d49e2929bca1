"""`--dry-run`: the plan a release would carry out, made by the same planning functions from what the engine shows
now, and printed; nothing is changed: no lock taken, no journal written, no container or compose call that changes
anything (only `ps`, `inspect`, `cp` out of a container and `compose config`).

The result is a plan event: its `lines` say it in words (plain and tty show them), the rest is its structure (JSON).
Exit 0 when the deploy could proceed, 3 when it would be refused, 4 when another deploy holds a service's lock.
"""

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from docker_reroll.engine import Engine
from docker_reroll.errors import EXIT_LOCKED, EXIT_OK, EXIT_REFUSED, RefusedError
from docker_reroll.facts import service_facts
from docker_reroll.lock import EngineLock
from docker_reroll.model import Journal, ProjectConfig
from docker_reroll.options import Options
from docker_reroll.planning import plan_service
from docker_reroll.progress import Progress
from docker_reroll.proxy import Route, routes_of
from docker_reroll.proxy_drain import DRIVERS
from docker_reroll.release_planning import Step
from docker_reroll.rendering import service_facts as plan_facts
from docker_reroll.rendering import service_lines
from docker_reroll.swarm_engine import SwarmEngine
from docker_reroll.swarm_planning import IN_PROGRESS, describe_update, plan_swarm_update, refusal_for
from docker_reroll.vocabulary import Action

NewConfig = Tuple[Optional[str], Optional[Dict[str, str]]]  # a Swarm service's new image and environment


class DryRun:
    def __init__(self, options: Options, docker: Engine, progress: Progress, command_line: str) -> None:
        self.options = options
        self.docker = docker
        self.progress = progress
        self.command_line = command_line
        self.lines: List[str] = []
        self.exit_code = EXIT_OK

    def run(self, project: ProjectConfig, steps: Sequence[Step], options: Mapping[str, Options],
            routes: Mapping[str, Route]) -> int:
        """`options`: each rolled service's own, as the deploy would resolve them; `routes`: proxy mode's."""
        self.lines.append(f"dry run: nothing is changed; project {project.name}")
        self.routes = routes
        services = [self._step(project, step, options.get(step.service, self.options)) for step in steps]
        self._end(project.name, services, "another deploy holds a lock: this one would wait or exit 4")
        return self.exit_code

    def run_swarm(self, stack: str, services: Mapping[str, Options], engine: SwarmEngine,
                  new_config: Callable[[str], NewConfig]) -> int:
        """The same for a Swarm stack (`services`: each with its options): the update docker-reroll would ask
        Swarm for, and what would stop it."""
        self.lines.append(f"dry run: nothing is changed; Swarm stack {stack}")
        facts = [self._swarm_service(stack, service, options, engine, new_config(service))
                 for service, options in services.items()]
        self._end(stack, facts, "another deploy is at work: this one would exit 4", stack=stack)
        return self.exit_code

    def _end(self, project: str, services: List[Dict[str, object]], locked: str, **more: object) -> None:
        self.lines.append({EXIT_OK: "the deploy can proceed", EXIT_REFUSED: "the deploy would be refused",
                           EXIT_LOCKED: locked}[self.exit_code])
        self.progress.plan({"dry_run": True, "project": project, **more, "exit_code": self.exit_code,
                            "services": services, "lines": self.lines})

    def _step(self, project: ProjectConfig, step: Step, options: Options) -> Dict[str, object]:
        say = self.lines.append
        say(f"{step.service}: {step.action} ({step.reason})")
        facts: Dict[str, object] = {"service": step.service, "action": step.action, "reason": step.reason,
                                    "warnings": list(step.warnings)}
        for warning in step.warnings:
            say(f"  warning: {warning}")
        if step.action == Action.SKIP:
            return facts
        journal = self._look_at_lock(project.name, step.service, options, facts)
        if step.action == Action.RECREATE:
            say(f"  `docker compose up -d --no-deps {step.service}` recreates it (stop, then start)")
            return facts
        spec = project.services[step.service]
        containers = self.docker.inspect(self.docker.service_container_ids(project.name, step.service))
        route = self.routes.get(step.service)
        try:
            plan = plan_service(step.service, spec, options, service_facts(self.docker, spec, containers, journal),
                                route)
        except RefusedError as error:
            facts["refused"] = str(error)
            say(f"  refused: {error}")
            self._worst(EXIT_REFUSED)
            return facts
        facts.update(plan_facts(plan))
        self.lines.extend(service_lines(plan))
        if route is not None:
            self._proxy(project, route, facts)
        return facts

    def _proxy(self, project: ProjectConfig, route: Route, facts: Dict[str, object]) -> None:
        """Proxy mode: the proxy's container, whether it can be driven for the route (a read of its configuration),
        and the configuration docker-reroll generates for it."""
        say = self.lines.append
        driver = DRIVERS[route.kind](self.docker)
        config = driver.config(routes_of(self.routes, route.proxy))
        found = [c for c in self.docker.inspect(self.docker.service_container_ids(project.name, route.proxy))
                 if c.running]
        problem = driver.check(found[0].id, route) if len(found) == 1 else \
            f"the service '{route.proxy}' runs {len(found)} container(s), not 1"
        facts["proxy"] = {"service": route.proxy, "kind": route.kind, "listen": route.listen, "port": route.port,
                          "protocol": route.protocol, "hosts": list(route.hosts), "problem": problem,
                          "config": config}
        if problem:
            say(f"  refused: proxy mode: {problem}")
            self._worst(EXIT_REFUSED)
        say(f"  proxy {route.proxy} ({route.kind}): pinned to the old containers, switched to the new ones once "
            "ready, each old one stopped when its connections have ended; then back to routing by Docker's DNS")
        say(f"  the configuration {route.proxy} needs at {route.config_path} (generated from the labels):")
        self.lines.extend(f"    | {line}" for line in config.splitlines())

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

    def _swarm_service(self, stack: str, service: str, options: Options, engine: SwarmEngine,
                       config: NewConfig) -> Dict[str, object]:
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

    def _worst(self, code: int) -> None:
        order = (EXIT_OK, EXIT_LOCKED, EXIT_REFUSED)  # a refusal outranks a lock: waiting would not help
        self.exit_code = max(self.exit_code, code, key=order.index)


def refused_plan(progress: Progress, error: RefusedError) -> None:
    """A refusal found before any service could be looked at (no such service, a profile): the plan says so."""
    progress.plan({"dry_run": True, "exit_code": EXIT_REFUSED, "services": [], "refused": str(error),
                   "lines": [f"dry run: the deploy would be refused: {error}"]})

"""A service's plan in words and as JSON: what a dry run prints, and what a deploy's `plan` event carries, from the
same `ServicePlan`."""

from typing import Dict, List, Optional, Sequence

from docker_reroll.model import Container
from docker_reroll.options import describe_settings
from docker_reroll.planning import ServicePlan, names, shown_pre_stop
from docker_reroll.vocabulary import Level


def plan_facts(plan: ServicePlan, dry_run: bool, project: Optional[str] = None) -> Dict[str, object]:
    """A deploy's own plan event: the plan of the service it is about to carry out."""
    facts: Dict[str, object] = {"dry_run": dry_run}
    if project is not None:
        facts["project"] = project
    facts["services"] = [{"service": plan.service, **service_facts(plan)}]
    facts["lines"] = [f"{plan.service}: plan", *service_lines(plan)]
    return facts


def service_facts(plan: ServicePlan) -> Dict[str, object]:
    """The plan's structure, for JSON (the README's `plan` event)."""
    drain = plan.drain
    return {
        "settings": [{"setting": f, "value": v, "source": s} for f, v, s in
                     describe_settings(plan.options, plan.route is not None)],
        "containers": [container_facts(c) for c in plan.old],
        "stale": [container_facts(c) for c in plan.stale],
        "replicas": plan.replicas,
        "journal": vars(plan.journal) if plan.journal else None,
        "batches": [{"start": b.start, "retire": b.retire} for b in plan.batches],
        "failure_action": plan.options.failure_action if len(plan.batches) > 1 else None,
        "healthcheck": plan.new_healthcheck,
        "pre_stop": [{"container": c.name, "command": shown_pre_stop(plan.options, c)}
                     for c in drain.containers if drain.pre_stop],
        "messages": [{"level": level, "message": message} for level, message in plan.messages],
    }


def service_lines(plan: ServicePlan) -> List[str]:
    """The plan in words, one line each, indented under the service's name."""
    options, service = plan.options, plan.service
    settings = describe_settings(options, plan.route is not None)
    lines = [f"  settings: {', '.join(f'{f} {v} ({s})' for f, v, s in settings)}",
             f"  containers: {states(plan.old)}"]
    if plan.stale:
        lines.append(f"  stale, removed first: {states(plan.stale)}")
    if plan.journal is not None:
        lines.append(f"  an interrupted deploy left its journal (it goes to {plan.journal.replicas} replica(s)): "
                     "this run would finish it")
    if plan.first_start:
        lines.append(f"  no container runs: `docker compose up -d` would start {plan.replicas or 1} (with its "
                     "dependencies)")
        return lines
    scale_to = len(plan.old) + plan.batches[0].start
    lines.append(f"  scale: {len(plan.old)} -> {scale_to} (`docker compose up -d --no-deps --no-recreate --scale "
                 f"{service}={scale_to} {service}`), then {plan.replicas} on the new config")
    lines += [f"  {'warning: ' if level == Level.WARN else ''}{message}" for level, message in plan.messages]
    lines.append(_new_containers(plan))
    drain = plan.drain
    lines += [f"  pre-stop for {c.name}: {shown_pre_stop(options, c)}" for c in drain.containers if drain.pre_stop]
    if drain.draining:
        until = f" and until Docker reports {names(drain.wait_unhealthy)} unhealthy (up to " \
                f"{options.healthcheck_timeout:g}s)" if drain.wait_unhealthy else ""
        lines.append(f"  drain: keep them running {drain.floor:g}s after the pre-stop command{until}, then "
                     f"{drain.pause:g}s more; then stop and remove them")
    else:
        lines.append(f"  no pre-stop command: {names(plan.old)} are stopped as soon as the new containers are ready")
    lines += [f"  {note}" for note in drain.notes + drain.warnings]
    return lines


def _new_containers(plan: ServicePlan) -> str:
    options, route = plan.options, plan.route
    healthy = f"wait up to {options.healthcheck_timeout:g}s for every new container to be healthy, then " \
              f"{options.wait_after_healthy:g}s more"
    plain = f"wait {options.wait:g}s, then check that the new containers still run"
    if route is not None:  # the proxy's own check replaces --wait's clock
        check = f"GET {route.health_path} answered 2xx" if route.health_path else "a connect to port " \
                f"{route.port}"
        healthy += f", then the proxy's check ({check}) on each"
        plain = f"wait up to {options.healthcheck_timeout:g}s for the proxy's check ({check}) to pass on each"
    if plan.new_healthcheck is None:
        return f"  new containers: the image is not on the engine yet: with a health check, {healthy}; without, " \
               f"{plain}"
    return f"  new containers: {healthy}" if plan.new_healthcheck else f"  new containers (no health check): {plain}"


def container_facts(container: Container) -> Dict[str, object]:
    return {"id": container.id, "name": container.name, "status": container.status, "health": container.health,
            "image": container.image}


def states(containers: Sequence[Container]) -> str:
    return ", ".join(f"{c.name} ({c.short_id}, {c.image}) {c.health or c.status}" for c in containers) or "none"

"""What a release does with each service, and why, decided before anything changes: the services named on the
command line in their order, or (`--all`) the whole project in dependency order, each rolled, left to compose
(recreated) or skipped. Pure functions over what the engine and compose reported."""

import difflib
from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Tuple

from docker_reroll.errors import RefusedError, UsageError
from docker_reroll.model import Container, ProjectConfig, ServiceSpec, stale
from docker_reroll.options import LABEL_PREFIX, SETTING_LABELS
from docker_reroll.proxy import PROXY_LABEL, PROXY_LABELS
from docker_reroll.vocabulary import Action


def cannot_run_twice(spec: ServiceSpec) -> Optional[Tuple[str, str]]:
    """Why two containers of the service cannot run side by side (so it cannot be rolled), and what to do; or
    None."""
    if spec.container_name:
        return (f"it sets container_name '{spec.container_name}'",
                "two of its containers cannot run side by side; remove container_name")
    if spec.network_mode == "host":
        return ("it uses network_mode: host",
                "the new and old containers would fight over the same ports; use a bridge network behind a proxy")
    if spec.fixed_host_ports:
        return (f"it publishes fixed host port(s) {', '.join(spec.fixed_host_ports)}",
                "a new container cannot bind them while the old one runs; use proxy mode: move the `ports:` entry "
                f"to a proxy service and label this one `{PROXY_LABEL}: <that service>` (README, \"Proxy mode\"), "
                "or put a proxy of your own in front, or publish a range")
    return None


def check_exists(project: ProjectConfig, service: str, profile_services: Sequence[str]) -> ServiceSpec:
    """Refuse a service the project does not define (or its profiles disable), before anything is touched."""
    spec = project.spec(service)
    if spec is None:
        if service in profile_services:
            raise RefusedError(f"service '{service}' is disabled by its profiles: enable it with --profile")
        defined = ", ".join(sorted(project.services)) or "none"
        raise RefusedError(f"no such service: '{service}' (defined services: {defined})")
    return spec


ROLL, RECREATE, SKIP = Action.ROLL, Action.RECREATE, Action.SKIP
STRATEGY_LABEL = "docker-reroll.strategy"  # `recreate`: never run two (a database); left to compose
STRATEGIES = (ROLL, RECREATE)
# Every `docker-reroll.*` label the tool reads: the settings, and how a release treats the service.
KNOWN_LABELS = tuple(sorted((*SETTING_LABELS, STRATEGY_LABEL, *PROXY_LABELS)))


@dataclass(frozen=True)
class Step:
    """What a release does with one service, and why."""

    service: str
    action: Action
    reason: str
    warnings: Tuple[str, ...] = ()  # said with the plan, before anything changes


@dataclass(frozen=True)
class ReleaseFacts:
    """What the engine says about a project, for planning a release: each service's containers (any state), the
    config hash compose would give it now (v2 only), and the image id each image name resolves to now (None: not
    on the engine)."""

    containers: Mapping[str, Sequence[Container]]
    hashes: Mapping[str, str]
    image_ids: Mapping[str, Optional[str]]


def plan_release(project: ProjectConfig, facts: ReleaseFacts, scale: Mapping[str, int],
                 named: Optional[Sequence[str]] = None, profile_services: Sequence[str] = ()) -> List[Step]:
    """What to do with each service: the `named` ones in the order given, else (`--all`) the whole project in
    dependency order. A service marked `docker-reroll.strategy=recreate` is left to compose however it was
    selected; a named service is otherwise rolled (refused if it cannot run twice), while `--all` skips what runs
    the current config and leaves to compose what cannot be rolled. Every refusal comes before anything changes."""
    if named is not None:
        for service in named:
            check_exists(project, service, profile_services)
    steps = []
    for service in named if named is not None else dependency_order(project):
        spec = project.services[service]
        running = [c for c in facts.containers.get(service, ()) if not stale(c)]
        strategy, warnings = service_strategy(spec, running)
        wanted = scale.get(service, spec.replicas)
        if named is not None:
            step = _named_step(spec, running, strategy, wanted)
        else:
            step = _whole_project_step(spec, running, strategy, wanted, facts)
        steps.append(Step(step.service, step.action, step.reason, tuple(warnings) + unknown_labels(spec)))
    return steps


def _named_step(spec: ServiceSpec, running: Sequence[Container], strategy: str, wanted: Optional[int]) -> Step:
    if wanted == 0:
        return _scaled_to_zero(spec, running)
    if strategy == RECREATE:
        return Step(spec.name, RECREATE, f"marked {STRATEGY_LABEL}=recreate: compose recreates it if it changed "
                                         "(stop, then start)")
    reason = cannot_run_twice(spec)
    if reason:
        raise RefusedError(f"service '{spec.name}' cannot be rolled: {reason[0]}: {reason[1]}")
    return Step(spec.name, ROLL, "named on the command line")


def _whole_project_step(spec: ServiceSpec, running: Sequence[Container], strategy: str, wanted: Optional[int],
                        facts: ReleaseFacts) -> Step:
    """`--all`: the project as `docker compose up -d` would leave it, without downtime where that is possible."""
    if wanted == 0:
        return _scaled_to_zero(spec, running)
    change = what_changed(spec, running, facts, wanted)
    if change is None:
        return Step(spec.name, SKIP, f"its {len(running)} container(s) run the current config and image")
    held_back = _left_to_compose(spec, running, strategy)
    if held_back:
        return Step(spec.name, RECREATE, f"{change}; {held_back}")
    return Step(spec.name, ROLL, change)


def what_changed(spec: ServiceSpec, running: Sequence[Container], facts: ReleaseFacts,
                 wanted: Optional[int]) -> Optional[str]:
    """Why `docker compose up -d` would change the service (None: it would not): what compose itself compares,
    the config hash and the image the service's image name resolves to now (a pulled or rebuilt tag), and the
    replica count."""
    current = facts.hashes.get(spec.name)
    if current is None:
        return "compose v1 cannot tell whether its config changed"
    if not running:
        return "no container of it runs"
    stale = [c for c in running if c.config_hash != current]
    if stale:
        return f"its config changed ({len(stale)} of {len(running)} container(s) on an older one)"
    moved = [c for c in running if c.image and facts.image_ids.get(c.image, c.image_id) != c.image_id]
    if moved:
        image = moved[0].image
        now = facts.image_ids.get(image)
        where = f"now {_short_image_id(now)}" if now else "not on the engine: compose would pull or build it"
        return (f"its image changed: {image} is {where}, {len(moved)} of {len(running)} container(s) run "
                f"{_short_image_id(moved[0].image_id)}")
    if wanted is not None and wanted != len(running):
        return f"{len(running)} container(s) run, {wanted} wanted"
    return None


def _short_image_id(image_id: Optional[str]) -> str:
    return (image_id or "").replace("sha256:", "")[:12] or "unknown"


def _scaled_to_zero(spec: ServiceSpec, running: Sequence[Container]) -> Step:
    """`deploy.replicas: 0` (or `scale: 0`) in the file: compose's own `up` takes the service down to none."""
    if not running:
        return Step(spec.name, SKIP, f"{spec.replicas_key} is 0 and none of its containers runs")
    return Step(spec.name, RECREATE, f"{spec.replicas_key} is 0: compose stops its {len(running)} container(s)")


def _left_to_compose(spec: ServiceSpec, running: Sequence[Container], strategy: str) -> Optional[str]:
    if strategy == RECREATE:
        return f"marked {STRATEGY_LABEL}=recreate: recreated by compose"
    reason = cannot_run_twice(spec)
    if reason:
        return f"cannot be rolled, {reason[0]}: recreated by compose"
    if not running:
        return "started by compose"
    return None


def service_strategy(spec: ServiceSpec, running: Sequence[Container]) -> Tuple[str, List[str]]:
    """Roll or recreate, from the service's `docker-reroll.strategy` label, and what to say about it. Compose v1
    cannot show the file's labels: then the label its running containers carry (from the file they were made
    from) decides, and the plan says so."""
    if spec.known:
        value = spec.labels.get(STRATEGY_LABEL, ROLL)
        if value not in STRATEGIES:
            raise UsageError(f"invalid value '{value}' for label {STRATEGY_LABEL} of service '{spec.name}': "
                             f"expected {' or '.join(STRATEGIES)}")
        return value, []
    marked = sorted({c.labels.get(STRATEGY_LABEL, ROLL) for c in running})
    if RECREATE in marked:
        return RECREATE, [f"{spec.name}: compose v1 cannot show the compose file's labels; its running "
                          f"containers are marked {STRATEGY_LABEL}=recreate, so compose recreates it"]
    return ROLL, [f"{spec.name}: compose v1 cannot show the compose file's labels, so {STRATEGY_LABEL} is "
                  f"unknown; {'its running containers carry none' if running else 'none of its containers runs'}: "
                  "it is rolled. Mark a service that must never run twice on its containers, or use compose v2"]


def unknown_labels(spec: ServiceSpec) -> Tuple[str, ...]:
    """A warning for each `docker-reroll.*` label the tool does not know, naming the closest known one: a
    misspelled setting would otherwise be dropped without a word."""
    warnings = []
    for label in sorted(spec.labels):
        if label.startswith(LABEL_PREFIX) and label not in KNOWN_LABELS:
            suffixes = [known[len(LABEL_PREFIX):] for known in KNOWN_LABELS]  # the shared prefix says nothing
            close = difflib.get_close_matches(label[len(LABEL_PREFIX):], suffixes, n=1)
            hint = f"did you mean {LABEL_PREFIX}{close[0]}?" if close else f"known labels: {', '.join(KNOWN_LABELS)}"
            warnings.append(f"{spec.name}: unknown label {label}, ignored; {hint}")
    return tuple(warnings)


def dependency_order(project: ProjectConfig) -> List[str]:
    """Services after those they depend on (depends_on), otherwise by name."""
    order: List[str] = []
    placed = set()

    def place(service: str, path: Sequence[str]) -> None:
        if service in placed or service not in project.services:
            return
        if service in path:
            raise RefusedError(f"depends_on forms a cycle: {' -> '.join([*path, service])}")
        for dependency in project.services[service].depends_on:
            place(dependency, [*path, service])
        placed.add(service)
        order.append(service)

    for service in sorted(project.services):
        place(service, [])
    return order

"""The engine's nouns, apart from the verbs that fetch them: containers, their events, a compose project's
services, the deploy journal, and the one vocabulary of container states. Parsed from the engine's and compose's
JSON by pure functions (the unit tests feed them saved output); everything that decides (planning) needs only
these, never the code that runs processes.
"""

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Mapping, Optional

# Compose's labels (docker/compose pkg/api/labels.go), the ones a rolling deploy reads.
LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_ONEOFF = "com.docker.compose.oneoff"
LABEL_NUMBER = "com.docker.compose.container-number"
LABEL_CONFIG_HASH = "com.docker.compose.config-hash"


class Status(str, Enum):
    """A container's state as the engine reports it (`State.Status`), and `removed`: ours, for a container the
    engine no longer knows. A str: engine JSON compares equal to its members."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"
    REMOVED = "removed"

    def __str__(self) -> str:
        return self.value


class Health(str, Enum):
    """`State.Health.Status`; a container without a health check has none (None)."""

    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"

    def __str__(self) -> str:
        return self.value


STALE = (Status.EXITED, Status.DEAD, Status.CREATED)  # removed before a deploy, not counted as serving
GONE = (Status.EXITED, Status.DEAD, Status.REMOVED)  # will not serve again by itself



@dataclass(frozen=True)
class Container:
    id: str
    name: str
    status: str  # created, running, paused, restarting, removing, exited, dead
    health: Optional[str]  # None without a health check, else starting, healthy or unhealthy
    exit_code: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    image_id: str = ""
    health_output: str = ""  # the last health probe's output: the first thing to read when a deploy fails
    stop_timeout: Optional[int] = None  # seconds, from stop_grace_period; None: the engine's default (10)
    image: str = ""  # the image as the config names it (`app:v2`); image_id is what it resolved to
    created: str = ""  # when the engine created it, by the engine's clock (RFC 3339)
    addresses: Mapping[str, str] = field(default_factory=dict)  # network name -> its IPv4 address there

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.status == Status.RUNNING

    @property
    def has_healthcheck(self) -> bool:
        return self.health is not None

    @property
    def number(self) -> int:
        try:
            return int(self.labels.get(LABEL_NUMBER, "0"))
        except ValueError:
            return 0

    @property
    def oneoff(self) -> bool:
        return self.labels.get(LABEL_ONEOFF, "False") == "True"

    @property
    def service(self) -> str:
        return self.labels.get(LABEL_SERVICE, "")

    @property
    def config_hash(self) -> str:
        """Compose's hash of the service config the container was made from (empty if compose set none)."""
        return self.labels.get(LABEL_CONFIG_HASH, "")


def gone(container: Container) -> bool:
    return container.status in GONE


def stale(container: Container) -> bool:
    return container.status in STALE


def serving(container: Container) -> bool:
    """Able to take traffic as far as Docker can tell: healthy, or running without a health check."""
    return container.health == Health.HEALTHY or (container.health is None and container.running)


JOURNAL_LABEL = "io.docker-reroll."


@dataclass(frozen=True)
class Journal:
    """What an interrupted deploy leaves for the next run: the replica count it goes to, and who served before it
    began (kept on the engine by lock.py)."""

    replicas: int
    containers: List[str] = field(default_factory=list)  # short ids
    since: float = 0.0

    def labels(self) -> Dict[str, str]:
        return {JOURNAL_LABEL + "replicas": str(self.replicas), JOURNAL_LABEL + "containers": ",".join(self.containers),
                JOURNAL_LABEL + "since": f"{self.since:.3f}"}

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Optional["Journal"]:
        replicas = labels.get(JOURNAL_LABEL + "replicas", "")
        if not replicas.isdigit():
            return None
        listed = labels.get(JOURNAL_LABEL + "containers", "")
        since = labels.get(JOURNAL_LABEL + "since", "")
        return cls(int(replicas), [c for c in listed.split(",") if c],
                   float(since) if since.replace(".", "", 1).isdigit() else 0.0)


def parse_inspect(text: str) -> List[Container]:
    """`docker inspect` JSON (a list of container objects) into Containers."""
    containers = []
    for item in json.loads(text or "[]"):
        state = item.get("State") or {}
        health = state.get("Health") or None
        log = (health or {}).get("Log") or []
        config = item.get("Config") or {}
        containers.append(
            Container(
                id=item["Id"],
                name=(item.get("Name") or "").lstrip("/"),
                status=state.get("Status", "unknown"),
                health=health.get("Status") if health else None,
                exit_code=int(state.get("ExitCode") or 0),
                labels=config.get("Labels") or {},
                image_id=item.get("Image", ""),
                health_output=(log[-1].get("Output") or "").strip() if log else "",
                stop_timeout=config.get("StopTimeout"),
                image=config.get("Image") or "",
                created=item.get("Created") or "",
                addresses={name: str(endpoint.get("IPAddress")) for name, endpoint in
                           ((item.get("NetworkSettings") or {}).get("Networks") or {}).items()
                           if endpoint and endpoint.get("IPAddress")},
            )
        )
    return containers


@dataclass(frozen=True)
class ContainerEvent:
    id: str
    action: str  # create, start, die, destroy, health_status
    health: Optional[str] = None  # for health_status: healthy, unhealthy or starting
    exit_code: Optional[int] = None  # for die
    engine_time: float = 0.0  # seconds since the epoch, by the engine's clock
    received: float = 0.0  # time.monotonic() when the line arrived


def parse_event(line: str, received: float = 0.0) -> Optional[ContainerEvent]:
    """One line of `docker events --format '{{json .}}'`; None for lines that are not container events."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if data.get("Type") != "container":
        return None
    action = data.get("Action") or data.get("status") or ""
    attributes = (data.get("Actor") or {}).get("Attributes") or {}
    container_id = (data.get("Actor") or {}).get("ID") or data.get("id") or ""
    health = None
    if action.startswith("health_status"):
        action, _, health = action.partition(":")
        health = health.strip() or None
    exit_code = attributes.get("exitCode")
    return ContainerEvent(
        id=container_id,
        action=action,
        health=health,
        exit_code=int(exit_code) if exit_code and exit_code.lstrip("-").isdigit() else None,
        engine_time=(data.get("timeNano") or 0) / 1e9 or float(data.get("time") or 0),
        received=received,
    )


@dataclass(frozen=True)
class ServiceSpec:
    """What the compose file says about a service, as far as a rolling deploy cares."""

    name: str
    container_name: Optional[str] = None
    network_mode: Optional[str] = None
    fixed_host_ports: List[str] = field(default_factory=list)
    # What compose does only when it starts a container itself (hooks; inline configs and secrets, which it
    # copies in at start): a container started with `docker start` would miss it.
    done_at_start: List[str] = field(default_factory=list)
    depends_on: List[str] = field(default_factory=list)
    labels: Mapping[str, str] = field(default_factory=dict)
    replicas: Optional[int] = None  # deploy.replicas or scale: what a plain `up` would scale it to
    replicas_key: str = ""  # which of the two set it
    update_config: Mapping[str, object] = field(default_factory=dict)  # deploy.update_config, as compose gives it
    known: bool = True  # False with compose v1, which tells only the service's name
    image: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)
    healthcheck: Optional[bool] = None  # set (True) or disabled (False) in the compose file; None: the image's
    published_targets: List[int] = field(default_factory=list)  # the container ports it publishes on the host


@dataclass(frozen=True)
class ProjectConfig:
    name: str
    services: Mapping[str, ServiceSpec]  # the services compose enables (profiles applied)

    def spec(self, service: str) -> Optional[ServiceSpec]:
        return self.services.get(service)


PORT_RANGE = re.compile(r"^\d+-\d+$")


def parse_compose_config(text: str) -> ProjectConfig:
    """`docker compose config --format json` into the project's name and each service's deploy-relevant facts."""
    data = json.loads(text)
    services = {name: _service_spec(data, name, definition or {})
                for name, definition in (data.get("services") or {}).items()}
    return ProjectConfig(name=data.get("name") or "", services=services)


def _service_spec(project: dict, name: str, definition: dict) -> ServiceSpec:
    fixed, targets = [], []
    for port in definition.get("ports") or []:
        published = str(port.get("published") or "") if isinstance(port, dict) else ""
        if published and not PORT_RANGE.match(published):
            fixed.append(f"{published}:{port.get('target')}")
        if isinstance(port, dict) and str(port.get("target") or "").isdigit():
            targets.append(int(port["target"]))
    deploy = definition.get("deploy") or {}
    replicas, key = deploy.get("replicas"), "deploy.replicas"
    if replicas is None:
        replicas, key = definition.get("scale"), "scale"
    return ServiceSpec(
        name=name,
        container_name=definition.get("container_name"),
        network_mode=definition.get("network_mode"),
        fixed_host_ports=fixed,
        done_at_start=_done_at_start(project, definition),
        depends_on=sorted(definition.get("depends_on") or {}),
        labels={str(k): str(v) for k, v in (definition.get("labels") or {}).items()},
        replicas=int(replicas) if replicas is not None else None,
        replicas_key=key if replicas is not None else "",
        update_config=deploy.get("update_config") or {},
        image=str(definition.get("image") or ""),
        environment={str(k): "" if v is None else str(v) for k, v in (definition.get("environment") or {}).items()},
        healthcheck=_healthcheck(definition.get("healthcheck")),
        published_targets=targets,
    )


def _healthcheck(definition: Optional[dict]) -> Optional[bool]:
    if not definition:
        return None
    test = definition.get("test") or []
    return not (definition.get("disable") or test[:1] == ["NONE"])


def _done_at_start(project: dict, service: dict) -> List[str]:
    """What compose does when it starts one of the service's containers: lifecycle hooks, and (since 2.37.3)
    copying configs and secrets given inline (`content:`, `environment:`) into it."""
    done = [f"{hook} hooks" for hook in ("pre_start", "post_start") if service.get(hook)]
    for kind in ("configs", "secrets"):
        defined = project.get(kind) or {}
        for reference in service.get(kind) or []:
            source = reference.get("source") if isinstance(reference, dict) else reference
            definition = defined.get(source) or {}
            if "content" in definition or "environment" in definition:
                done.append(f"inline {kind[:-1]} '{source}'")
    return done


# ---------------------------------------------------------------------------------------------- Swarm

STACK_LABEL = "com.docker.stack.namespace"
NANOSECONDS = 1e9
DEFAULT_STOP_GRACE = 10.0  # the engine's, for a task that sets no stop_grace_period


@dataclass(frozen=True)
class UpdateConfig:
    """A service's rolling-update settings (`Spec.UpdateConfig`); the defaults are Swarm's, which the engine fills
    in for a service created without any."""

    parallelism: int = 1  # 0: all at once
    delay: float = 0.0
    monitor: float = 5.0
    failure_action: str = "pause"
    max_failure_ratio: float = 0.0
    order: str = "stop-first"

    @classmethod
    def from_inspect(cls, config: Optional[Mapping[str, Any]]) -> "UpdateConfig":
        if not config:
            return cls()
        return cls(parallelism=int(config.get("Parallelism") or 0),
                   delay=int(config.get("Delay") or 0) / NANOSECONDS,
                   monitor=int(config.get("Monitor") or 0) / NANOSECONDS or cls.monitor,  # 0: Swarm's 5 s
                   failure_action=config.get("FailureAction") or cls.failure_action,
                   max_failure_ratio=float(config.get("MaxFailureRatio") or 0.0),
                   order=config.get("Order") or cls.order)


@dataclass
class SwarmService:
    """What `docker service inspect` says about a service, as far as a deploy cares."""

    id: str
    name: str
    image: str  # as the spec has it: `app:latest@sha256:...` once Swarm resolved the tag on a registry
    env: List[str]
    replicas: Optional[int]  # None: a global service (one task per node)
    update_state: str = ""  # UpdateStatus.State: updating, completed, paused, rollback_started, rollback_completed
    update_started: str = ""
    update_message: str = ""
    stack: str = ""
    version: int = 0
    update_config: UpdateConfig = UpdateConfig()
    stop_grace: float = DEFAULT_STOP_GRACE

    @classmethod
    def from_inspect(cls, item: Dict[str, Any]) -> "SwarmService":
        spec = item.get("Spec") or {}
        container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
        replicated = (spec.get("Mode") or {}).get("Replicated")
        status = item.get("UpdateStatus") or {}
        grace = container.get("StopGracePeriod")
        return cls(id=item.get("ID") or "", name=spec.get("Name") or "", image=container.get("Image") or "",
                   env=[str(e) for e in container.get("Env") or []],
                   replicas=int(replicated.get("Replicas") or 0) if replicated is not None else None,
                   update_state=status.get("State") or "", update_started=status.get("StartedAt") or "",
                   update_message=status.get("Message") or "",
                   stack=(spec.get("Labels") or {}).get(STACK_LABEL) or "",
                   version=int((item.get("Version") or {}).get("Index") or 0),
                   update_config=UpdateConfig.from_inspect(spec.get("UpdateConfig")),
                   stop_grace=int(grace) / NANOSECONDS if grace is not None else DEFAULT_STOP_GRACE)


def without_resolved_digest(image: str) -> str:
    """A spec's `name:tag@sha256:...` as the tag it was resolved from, so that the registry is asked again; an image
    pinned by digest alone (`name@sha256:...`) stays as it is."""
    name, at, _ = image.partition("@")
    return name if at and ":" in name.rsplit("/", 1)[-1] else image


def digest_of(image: str) -> str:
    return image.partition("@")[2]


@dataclass
class Task:
    id: str
    slot: str
    image: str
    desired: str  # running, shutdown
    state: str  # new, pending, assigned, preparing, starting, running, shutdown, failed, rejected, complete
    error: str = ""
    container_id: str = ""
    service_version: int = 0
    reference: str = ""  # the image as the task's spec has it, with the digest Swarm pinned


def parse_tasks(text: str) -> List[Task]:
    """`docker inspect` of a service's tasks."""
    tasks = []
    for item in json.loads(text or "[]"):
        spec = (item.get("Spec") or {}).get("ContainerSpec") or {}
        status = item.get("Status") or {}
        tasks.append(Task(
            id=item.get("ID") or "", slot=str(item.get("Slot") or ""),
            image=(spec.get("Image") or "").split("@", 1)[0], desired=item.get("DesiredState") or "",
            state=status.get("State") or "", error=status.get("Err") or "",
            container_id=(status.get("ContainerStatus") or {}).get("ContainerID") or "",
            service_version=int((item.get("Version") or {}).get("Index") or 0), reference=spec.get("Image") or "",
        ))
    return tasks

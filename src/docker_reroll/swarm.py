"""A Swarm stack service, deployed with Swarm's own rolling update: docker-reroll decides the update's settings and
follows it; Swarm starts, health-checks, stops and, on a failure, rolls back the tasks.

    find NAME_web -> docker service update --detach (start-first, rollback on failure, --force) -> follow
                     UpdateStatus and the tasks until completed (exit 0) or rolled back (exit 1)
                     interrupt before completed: docker service rollback, wait for it (exit 128+signal)

Swarm keeps the update's state itself, so there is no journal: an update in progress (`updating`) when a run
starts means another deploy is at work (exit 4). The engine lock still keeps two docker-reroll runs apart.
"""

import json
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set

from docker_reroll.engine import Docker, compose_message
from docker_reroll.errors import DeployFailed, Interrupted, LockedError, RefusedError
from docker_reroll.interrupts import Interrupts, signal_name
from docker_reroll.lock import EngineLock
from docker_reroll.options import Options
from docker_reroll.progress import Progress

STACK_LABEL = "com.docker.stack.namespace"
FOLLOW_SECONDS = 0.5  # how often the update's state is read: Swarm itself moves in seconds
ROLLBACK_EXTRA_SECONDS = 60.0
IN_PROGRESS = ("updating", "rollback_started")


@dataclass
class SwarmService:
    """What `docker service inspect` says about a service, as far as a deploy cares."""

    id: str
    name: str
    image: str
    env: List[str]
    replicas: Optional[int]
    update_state: str = ""  # UpdateStatus.State: updating, completed, paused, rollback_started, rollback_completed
    update_started: str = ""
    update_message: str = ""
    stack: str = ""
    version: int = 0

    @classmethod
    def from_inspect(cls, item: Dict[str, Any]) -> "SwarmService":
        spec = item.get("Spec") or {}
        container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
        replicated = (spec.get("Mode") or {}).get("Replicated") or {}
        status = item.get("UpdateStatus") or {}
        return cls(id=item.get("ID") or "", name=spec.get("Name") or "",
                   image=(container.get("Image") or "").split("@", 1)[0],
                   env=[str(e) for e in container.get("Env") or []],
                   replicas=int(replicated["Replicas"]) if "Replicas" in replicated else None,
                   update_state=status.get("State") or "", update_started=status.get("StartedAt") or "",
                   update_message=status.get("Message") or "",
                   stack=(spec.get("Labels") or {}).get(STACK_LABEL) or "",
                   version=int((item.get("Version") or {}).get("Index") or 0))


# Swarm's task states in the container states the progress modes know (scheduled and not yet started: created)
TASK_STATES = {"starting": "starting", "running": "running", "shutdown": "removed", "remove": "removed",
               "complete": "exited", "failed": "exited", "rejected": "exited", "orphaned": "exited"}


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
            service_version=int((item.get("Version") or {}).get("Index") or 0),
        ))
    return tasks


class SwarmEngine:
    """The Swarm calls, through the same `docker` (and flags) as every other call."""

    def __init__(self, docker: Docker) -> None:
        self.docker = docker

    def is_manager(self) -> bool:
        result = self.docker.run("info", "--format", "{{json .Swarm.ControlAvailable}}", check=False)
        return result.returncode == 0 and result.stdout.strip() == "true"

    def stack_services(self, service: str) -> List[str]:
        """The names of every stack's service called `service` (`STACK_service`)."""
        result = self.docker.run("service", "ls", "--filter", f"label={STACK_LABEL}", "--format",
                                 "{{.Name}}", check=False)
        candidates = [name for name in result.stdout.split() if name.endswith(f"_{service}")]
        if not candidates:
            return []
        # by the stack's own label: `shop_admin_web` is stack shop's `admin_web`, not stack shop_admin's `web`
        result = self.docker.run("service", "inspect", "--format",
                                 f'{{{{.Spec.Name}}}} {{{{index .Spec.Labels "{STACK_LABEL}"}}}}', *candidates,
                                 check=False)
        named = (line.split() for line in result.stdout.splitlines())
        return sorted(fields[0] for fields in named if len(fields) == 2 and fields[0] == f"{fields[1]}_{service}")

    def inspect(self, name: str) -> Optional[SwarmService]:
        result = self.docker.run("service", "inspect", name, check=False)
        if result.returncode != 0:
            return None
        return SwarmService.from_inspect(json.loads(result.stdout)[0])

    def tasks(self, name: str) -> List[Task]:
        ids = self.docker.run("service", "ps", "--quiet", "--no-trunc", name, check=False).stdout.split()
        if not ids:
            return []
        result = self.docker.run("inspect", "--type", "task", *ids, check=False)
        return parse_tasks(result.stdout) if result.stdout.strip().startswith("[") else []

    def update(self, name: str, args: Sequence[str]) -> None:
        result = self.docker.run("service", "update", "--detach", *args, name, check=False)
        if result.returncode != 0:
            raise DeployFailed(f"docker service update {name}: {compose_message(result.stderr)}")

    def rollback(self, name: str) -> str:
        result = self.docker.run("service", "rollback", "--detach", name, check=False)
        return "" if result.returncode == 0 else compose_message(result.stderr)


@dataclass
class SwarmPlan:
    args: List[str]  # for docker service update
    changes: List[str] = field(default_factory=list)  # in words
    deadline: float = 0.0  # seconds the whole update may take before it is rolled back


def plan_swarm_update(options: Options, current: SwarmService, image: Optional[str],
                      env: Optional[Mapping[str, str]]) -> SwarmPlan:
    """The update's arguments: Swarm's rolling update, start-first, rolled back by Swarm on a failure, with the
    batch size, delay and monitor of --max-surge / deploy.update_config, and the new image and environment."""
    replicas = current.replicas or 1
    parallelism = options.max_surge or 0  # 0: all at once, as a compose deploy does by default
    action = options.failure_action if options.failure_action != "continue" else "continue"
    args = ["--update-order", "start-first", "--update-failure-action", action,
            "--update-parallelism", str(parallelism), "--update-delay", f"{options.update_delay:g}s",
            "--update-max-failure-ratio", f"{options.max_failure_ratio:g}",
            "--rollback-order", "start-first", "--rollback-parallelism", str(parallelism),
            "--no-resolve-image", "--force"]
    monitor = options.update_monitor or options.wait_after_healthy
    if monitor:
        args += ["--update-monitor", f"{monitor:g}s"]
    changes = []
    if image and image != current.image:
        args += ["--image", image]
        changes.append(f"image {current.image} -> {image}")
    if env is not None:
        have = dict(item.partition("=")[::2] for item in current.env)
        for key, value in sorted(env.items()):
            if have.get(key) != value:
                args += ["--env-add", f"{key}={value}"]
                changes.append(f"{key}={value}")
        for key in sorted(set(have) - set(env)):
            args += ["--env-rm", key]
            changes.append(f"{key} removed")
    batches = -(-replicas // parallelism) if parallelism else 1
    deadline = batches * (options.healthcheck_timeout + options.update_delay + (monitor or 5.0))
    return SwarmPlan(args, changes or ["the same config (tasks replaced: --force)"], deadline)


class SwarmDeployment:
    """One Swarm service updated by Swarm and followed to its end."""

    def __init__(self, options: Options, name: str, service: str, engine: SwarmEngine, progress: Progress,
                 interrupts: Interrupts, lock: EngineLock, new_config: "tuple[Optional[str], Optional[Dict[str, str]]]"
                 ) -> None:
        self.options = options
        self.name = name
        self.service = service
        self.engine = engine
        self.progress = progress
        self.interrupts = interrupts
        self.lock = lock
        self.new_image, self.new_env = new_config
        self.old_tasks: List[Task] = []
        self.new_tasks: List[Task] = []
        self._history: Set[str] = set()
        self.consistent = True  # Swarm keeps the state: a service it updates or rolls back is never left half-way

    def check(self) -> SwarmService:
        """The service as it is, unless it is no Swarm service or Swarm is updating it already."""
        self.progress.phase("prepare", self.service)
        current = self.engine.inspect(self.name)
        if current is None:
            raise RefusedError(f"no Swarm service {self.name}")
        if current.update_state in IN_PROGRESS:
            raise LockedError(f"Swarm is already updating {self.name} ({current.update_state} since "
                              f"{current.update_started}): wait for it, or `docker service rollback {self.name}`")
        return current

    def run(self, current: SwarmService) -> None:
        plan = plan_swarm_update(self.options, current, self.new_image, self.new_env)
        tasks = self.engine.tasks(self.name)
        self.old_tasks = [t for t in tasks if t.desired == "running"]
        self._history = {t.id for t in tasks} - {t.id for t in self.old_tasks}  # earlier deploys' tasks: not shown
        before = {t.id for t in self.old_tasks}
        self.progress.info(f"updating Swarm service {self.name} ({current.replicas} replica(s)): "
                           f"{'; '.join(plan.changes)}; start-first, on a failure: {self.options.failure_action}")
        self._check_interrupt()
        self.lock.verify()
        self.progress.phase("update", self.service)
        self.engine.update(self.name, plan.args)
        outcome = self._follow(current, before, plan.deadline)
        if outcome == "completed":
            self.new_tasks = [t for t in self.engine.tasks(self.name) if t.desired == "running"]
            self.progress.info(f"deployed {self.name}: {len(self.new_tasks)} task(s) running the new config")
            return
        self._failed(outcome)

    def _follow(self, before: SwarmService, old_ids: set, deadline_seconds: float) -> str:
        """Until Swarm says completed, rolled back or paused; an interrupt or the deadline asks it to roll back."""
        deadline = time.monotonic() + deadline_seconds
        asked_rollback = ""
        while True:
            state = self.engine.inspect(self.name)
            self._show_tasks(old_ids)
            if state is not None and state.update_started and state.update_started != before.update_started or (
                    state is not None and state.version > before.version and state.update_state):
                if state.update_state == "completed":
                    return "completed"
                if state.update_state in ("rollback_completed", "paused", "rollback_paused"):
                    return asked_rollback or state.update_state
            if not asked_rollback:
                signum = self.interrupts.first_signal
                if signum is not None:
                    asked_rollback = "interrupted"
                    self._ask_rollback(f"interrupted by {signal_name(signum)}")
                    deadline = time.monotonic() + ROLLBACK_EXTRA_SECONDS + deadline_seconds
                elif time.monotonic() > deadline:
                    asked_rollback = "timeout"
                    self._ask_rollback(f"not complete after {deadline_seconds:g}s")
                    deadline = time.monotonic() + ROLLBACK_EXTRA_SECONDS + deadline_seconds
            elif self.interrupts.count > 1 or time.monotonic() > deadline:
                return "abandoned"
            self.interrupts.sleep(FOLLOW_SECONDS, interrupts_seen=self.interrupts.count)

    def _ask_rollback(self, why: str) -> None:
        self.progress.warn(f"{why}: asking Swarm to roll {self.name} back (docker service rollback)")
        self.progress.phase("roll back", self.service)
        failure = self.engine.rollback(self.name)
        if failure:
            self.progress.warn(f"docker service rollback: {failure}")

    def _show_tasks(self, old_ids: set) -> None:
        for task in self.engine.tasks(self.name):
            if task.id in self._history:
                continue
            role = "old" if task.id in old_ids else "new"
            if role == "new" and task.desired != "running" and task.state in ("new", "pending"):
                continue
            state = TASK_STATES.get(task.state, "created")
            self.progress.container(self.service, task.id, f"{self.name}.{task.slot}.{task.id[:6]}", role, state,
                                    task.image)

    def _failed(self, outcome: str) -> None:
        old_ids = {t.id for t in self.old_tasks}
        errors = sorted({f"{self.name}.{t.slot}: {t.error}" for t in self.engine.tasks(self.name)
                         if t.error and t.id not in self._history and t.id not in old_ids})
        for error in errors:
            self.progress.error(error)
        current = self.engine.inspect(self.name)
        message = current.update_message if current else ""
        if outcome == "interrupted":
            signum = self.interrupts.first_signal or 0
            raise Interrupted(f"interrupted by {signal_name(signum)}: Swarm rolled {self.name} back", signum)
        if outcome == "abandoned":  # Swarm keeps rolling it back on its own; its state, not ours, says where
            why = f"stopped following {self.name} while Swarm rolls it back ({message}); see " \
                  f"`docker service ps {self.name}`"
            if self.interrupts.count > 1:
                raise Interrupted(f"interrupted twice: {why}", self.interrupts.first_signal or 0, rolled_back=False)
            raise DeployFailed(why)
        if outcome in ("paused", "rollback_paused"):
            paused = DeployFailed(f"Swarm paused the update of {self.name}: {message}; `docker service rollback "
                                  f"{self.name}` or fix and deploy again")
            paused.rolled_back = False
            raise paused
        raise DeployFailed(f"Swarm rolled {self.name} back: {message or outcome}" +
                           (f" ({'; '.join(errors)})" if errors else ""))

    def _check_interrupt(self) -> None:
        signum = self.interrupts.first_signal
        if signum is not None:
            raise Interrupted(f"interrupted by {signal_name(signum)} before the update began", signum)

"""A Swarm stack service, deployed with Swarm's own rolling update: docker-reroll decides what the update changes and
follows it; Swarm starts, health-checks, stops and, on a failure, rolls back the tasks, with the service's own update
settings wherever the user set none.

    find NAME_web -> docker service update --detach (the tag resolved again, --force) -> follow UpdateStatus and the
                     tasks until completed (exit 0), rolled back, paused or still rolling back (exit 1)
                     interrupt before completed: docker service rollback, wait for it (exit 128+signal)

Swarm keeps the update's state itself, so there is no journal: an update in progress (`updating`) when a run
starts means another deploy is at work (exit 4). The engine lock still keeps two docker-reroll runs apart.
"""

import time
from typing import Dict, List, Optional, Set, Tuple

from docker_reroll.errors import DeployFailed, DockerCommandError, Interrupted, LockedError, RefusedError, RerollError
from docker_reroll.interrupts import Interrupts, signal_name
from docker_reroll.lock import EngineLock
from docker_reroll.model import SwarmService, Task, digest_of
from docker_reroll.options import Options
from docker_reroll.progress import Progress
from docker_reroll.swarm_engine import SwarmEngine
from docker_reroll.swarm_planning import (
    IN_PROGRESS,
    PAUSED,
    ROLLBACK_PAUSED,
    ROLLED_BACK,
    ROLLING_BACK,
    UPDATING,
    describe_update,
    plan_swarm_update,
    refusal_for,
)
from docker_reroll.vocabulary import Phase, Role, Shown

FOLLOW_SECONDS = 0.5  # how often the update's state is read: Swarm itself moves in seconds
ROLLBACK_EXTRA_SECONDS = 60.0

# Swarm's task states in the container states the progress modes know (scheduled and not yet started: created)
TASK_STATES = {"starting": Shown.STARTING, "running": Shown.RUNNING, "shutdown": Shown.REMOVED,
               "remove": Shown.REMOVED, "complete": Shown.EXITED, "failed": Shown.EXITED, "rejected": Shown.EXITED,
               "orphaned": Shown.EXITED}


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
        self.final_state = ""  # UpdateStatus.State when the run stopped following
        self._history: Set[str] = set()
        self.consistent = True  # Swarm keeps the state: a service it updates or rolls back is never left half-way

    def check(self) -> SwarmService:
        """The service as it is, unless it is no Swarm service, cannot take the options, or Swarm is updating it
        already."""
        self.progress.phase(Phase.PREPARE, self.service)
        current = self.engine.inspect(self.name)
        refusal = refusal_for(self.name, current, self.options.scale.get(self.service))
        if refusal:
            raise RefusedError(refusal)
        assert current is not None
        if current.update_state in IN_PROGRESS:
            raise LockedError(f"Swarm is already updating {self.name} ({current.update_state} since "
                              f"{current.update_started}): wait for it, or `docker service rollback {self.name}`",
                              self.service)
        return current

    def run(self, current: SwarmService) -> None:
        plan = plan_swarm_update(self.options, current, self.new_image, self.new_env,
                                 self.options.scale.get(self.service))
        tasks = self.engine.tasks(self.name)
        self.old_tasks = [t for t in tasks if t.desired == "running"]
        self._history = {t.id for t in tasks} - {t.id for t in self.old_tasks}  # earlier deploys' tasks: not shown
        before = {t.id for t in self.old_tasks}
        self.progress.info(f"updating Swarm service {self.name} ({current.replicas} replica(s)): "
                           f"{'; '.join(plan.changes)}")
        self.progress.info(f"update settings of {self.name}: {describe_update(plan)}; followed for up to "
                           f"{plan.deadline:g}s")
        for warning in plan.warnings:
            self.progress.warn(warning)
        self._check_interrupt()
        self.lock.verify()
        self.progress.phase(Phase.UPDATE, self.service)
        try:
            warnings = self.engine.update(self.name, plan.args, plan.env)
        except DockerCommandError as error:
            raise DeployFailed(f"docker service update {self.name}: {error.stderr}") from None
        for warning in warnings:
            self.progress.warn(f"docker service update: {warning}")
        self._say_resolved(current)
        state, asked = self._follow(current, before, plan.deadline)
        self.final_state = state
        if state == "completed":
            self.new_tasks = [t for t in self.engine.tasks(self.name) if t.desired == "running"]
            self.progress.info(f"deployed {self.name}: {len(self.new_tasks)} task(s) running the new config")
            return
        self._failed(state, asked)

    def _say_resolved(self, before: SwarmService) -> None:
        after = self.engine.inspect(self.name)
        if after is not None and digest_of(after.image) and after.image != before.image:
            self.progress.info(f"{self.name} now runs {after.image}")

    def _follow(self, before: SwarmService, old_ids: set, deadline_seconds: float) -> Tuple[str, str]:
        """Until Swarm says completed, rolled back or paused, or we stop following a roll-back: Swarm's state, and
        why we asked for a roll-back ("interrupted", "timeout", or "")."""
        deadline = time.monotonic() + deadline_seconds
        asked_rollback = ""
        while True:
            state = self.engine.inspect(self.name)
            self._show_tasks(old_ids)
            ours = state is not None and (state.update_started and state.update_started != before.update_started or
                                          state.version > before.version and state.update_state)
            now = state.update_state if state is not None and ours else ""
            if now in ("completed", "rollback_completed", "paused", "rollback_paused"):
                return now, asked_rollback
            if not asked_rollback:
                signum = self.interrupts.first_signal
                if signum is not None:
                    asked_rollback = "interrupted"
                    self._ask_rollback(f"interrupted by {signal_name(signum)}", now)
                    deadline = time.monotonic() + ROLLBACK_EXTRA_SECONDS + deadline_seconds
                elif time.monotonic() > deadline:
                    asked_rollback = "timeout"
                    self._ask_rollback(f"not complete after {deadline_seconds:g}s", now)
                    deadline = time.monotonic() + ROLLBACK_EXTRA_SECONDS + deadline_seconds
            elif self.interrupts.count > 1 or time.monotonic() > deadline:
                return now or "updating", asked_rollback
            self.interrupts.sleep(FOLLOW_SECONDS, interrupts_seen=self.interrupts.count)

    def _ask_rollback(self, why: str, state: str) -> None:
        self.progress.phase(Phase.ROLL_BACK, self.service)
        if state == "rollback_started":  # Swarm is at it already (failure_action rollback): wait for it
            self.progress.warn(f"{why}: Swarm is rolling {self.name} back already; waiting for it")
            return
        self.progress.warn(f"{why}: asking Swarm to roll {self.name} back (docker service rollback)")
        try:
            self.engine.rollback(self.name)
        except DockerCommandError as error:
            self.progress.warn(f"docker service rollback: {error.failures()}")

    def _show_tasks(self, old_ids: set) -> None:
        for task in self.engine.tasks(self.name):
            if task.id in self._history:
                continue
            role = Role.OLD if task.id in old_ids else Role.NEW
            if role == Role.NEW and task.desired != "running" and task.state in ("new", "pending"):
                continue
            state = TASK_STATES.get(task.state, Shown.CREATED)
            self.progress.container(self.service, task.id, f"{self.name}.{task.slot}.{task.id[:6]}", role, state,
                                    task.image)

    def _failed(self, state: str, asked: str) -> None:
        """Raise what Swarm reports: rolled back (the old config serves), paused, its roll-back paused, or its
        roll-back still in progress when we stopped following (the service's state says the rest)."""
        old_ids = {t.id for t in self.old_tasks}
        errors = sorted({f"{self.name}.{t.slot}: {t.error}" for t in self.engine.tasks(self.name)
                         if t.error and t.id not in self._history and t.id not in old_ids})
        for line in errors:
            self.progress.error(line)
        current = self.engine.inspect(self.name)
        message = (current.update_message if current else "") or state
        ending = {"rollback_completed": ROLLED_BACK, "paused": PAUSED, "rollback_paused": ROLLBACK_PAUSED,
                  "rollback_started": ROLLING_BACK}.get(state, UPDATING)
        said = {
            ROLLED_BACK: f"Swarm rolled {self.name} back: {message}",
            PAUSED: f"Swarm paused the update of {self.name}: {message}; some tasks may run the new config: "
                    f"`docker service rollback {self.name}`, or fix it and deploy again",
            ROLLBACK_PAUSED: f"Swarm paused the roll-back of {self.name}: {message}; some tasks may still run the "
                             f"new config: see `docker service ps {self.name}`",
            ROLLING_BACK: f"stopped following {self.name} while Swarm rolls it back ({message}); Swarm goes on by "
                          f"itself: see `docker service ps {self.name}`",
            UPDATING: f"stopped following {self.name} while Swarm still updates it ({message}); see "
                      f"`docker service ps {self.name}`",
        }[ending] + (f" ({'; '.join(errors)})" if errors and ending == ROLLED_BACK else "")
        signum = self.interrupts.first_signal
        if signum is not None:
            stopped = "interrupted twice" if self.interrupts.count > 1 and ending in (ROLLING_BACK, UPDATING) \
                else f"interrupted by {signal_name(signum)}"
            error: RerollError = Interrupted(f"{stopped}: {said}", signum, rolled_back=ending == ROLLED_BACK)
        else:
            error = DeployFailed(("not complete in time: " if asked == "timeout" else "") + said)
            error.rolled_back = ending == ROLLED_BACK
        error.service_state = "" if ending == ROLLED_BACK else ending
        raise error

    def _check_interrupt(self) -> None:
        signum = self.interrupts.first_signal
        if signum is not None:
            raise Interrupted(f"interrupted by {signal_name(signum)} before the update began", signum)

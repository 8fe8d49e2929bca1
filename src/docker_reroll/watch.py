"""Waiting for containers: the engine's event stream wakes us the moment something changes.

Subscribe first, then reconcile with one `docker inspect`, then react to events: nothing that happened before the
subscription is missed, and no waiting phase costs a poll interval. If the stream breaks, waits fall back to polling
with `inspect`; every wait has a deadline and notices interrupts, so none can hang.
"""

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from docker_reroll.engine import Engine, EventSubscription
from docker_reroll.interrupts import POLL_SECONDS, Interrupts
from docker_reroll.model import Container, ContainerEvent, Health, Status, gone, serving
from docker_reroll.vocabulary import Ended

RECONCILE_SECONDS = 2.0  # with a live event stream: a cheap safety net against a lost event
RESUBSCRIBE_SECONDS = 2.0  # without one: how often to try a new stream (the engine may have restarted)
POLL_FALLBACK_SECONDS = 0.5  # without one: how often to inspect
RECENT_EVENTS_KEPT = 16



@dataclass(frozen=True)
class WaitEnd:
    """How a wait ended: the condition held, it can no longer hold (with why), time ran out, or an interrupt."""

    how: Ended
    reason: str = ""

    @property
    def done(self) -> bool:
        return self.how == Ended.DONE


DONE = WaitEnd(Ended.DONE)
Verdict = Callable[[List[Container]], Optional[WaitEnd]]  # None: keep waiting


@dataclass
class WaitStats:
    """Waiting time and how fast we acted on the event that ended a wait (for the benchmark)."""

    wait_seconds: float = 0.0  # inside waits, less the inspects they made (those count as commands)
    reaction_seconds: List[float] = field(default_factory=list)  # event line received -> wait returned
    engine_reaction_seconds: List[float] = field(default_factory=list)  # engine's event time -> wait returned
    events_received: int = 0
    used_polling: bool = False


class ContainerWatch:
    def __init__(self, docker: Engine, project: str, service: str, interrupts: Interrupts,
                 on_change: Optional[Callable[[Container], None]] = None) -> None:
        self._docker = docker
        self._on_change = on_change  # told of every state we learn, for the progress display
        self._project = project
        self._service = service
        self._interrupts = interrupts
        self._cond = threading.Condition()
        self._states: Dict[str, Container] = {}
        self._recent_events: Dict[str, List[ContainerEvent]] = {}  # per container, to replay over an inspect
        self._last_event: Optional[ContainerEvent] = None
        self._stream: Optional[EventSubscription] = None
        self._stream_alive = False
        self._subscribed_at = 0.0
        self._generation = 0
        self._closing = False
        self.stats = WaitStats()

    def __enter__(self) -> "ContainerWatch":
        self._subscribe()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._closing = True
        if self._stream is not None:
            self._stream.close()

    def _subscribe(self) -> None:
        """A new event stream: at the start, and again when one broke (the engine restarted, the CLI died); the
        end of a stream it replaced is not taken for the new one's."""
        self._subscribed_at = time.monotonic()
        with self._cond:
            self._generation += 1
            generation, old = self._generation, self._stream
            self._stream_alive = True
        if old is not None:
            old.close()
        try:
            stream = self._docker.events(self._project, self._service,
                                         lambda event: self._on_event(event, generation))
        except OSError:
            with self._cond:
                self._stream_alive = False
            return
        with self._cond:
            self._stream = stream

    def _on_event(self, event: Optional[ContainerEvent], generation: Optional[int] = None) -> None:
        with self._cond:
            if generation is not None and generation != self._generation:
                return  # a stream we replaced
            if event is None:
                self._stream_alive = False
                # Once polled, always said: closing a stream that was subscribed again must not hide it.
                self.stats.used_polling = self.stats.used_polling or not self._closing
            else:
                self.stats.events_received += 1
                self._apply_event(event)
            self._cond.notify_all()

    def _apply_event(self, event: ContainerEvent) -> None:
        recent = self._recent_events.setdefault(event.id, [])
        recent.append(event)
        del recent[:-RECENT_EVENTS_KEPT]
        if event.id in self._states:
            self._learn(evolve(self._states[event.id], event))
            self._last_event = event

    def _learn(self, state: Container) -> None:
        self._states[state.id] = state
        if self._on_change is not None:
            self._on_change(state)

    def refresh(self, ids: Sequence[str]) -> List[Container]:
        """One inspect for all `ids`, then the events that arrived while it ran on top: they are newer."""
        started = time.monotonic()
        found = {c.id: c for c in self._docker.inspect(ids)}
        # Made again after an engine outage, the inspect answers from after it: the events received while the engine
        # was away (the dies of its shutdown) are older than that answer.
        started = max(started, self._docker.answered_since)
        with self._cond:
            for container_id in ids:
                previous = self._states.get(container_id)
                state = found.get(container_id)
                if state is None:  # gone: a wait for it must fail, not go on with the others
                    state = dataclasses.replace(previous or Container(container_id, container_id[:12], "", None),
                                                status=Status.REMOVED)
                for event in self._recent_events.get(container_id, []):
                    if event.received >= started:
                        state = evolve(state, event)
                self._learn(state)
            return [self._states[i] for i in ids]

    def known(self, ids: Sequence[str]) -> List[Container]:
        """The containers as the events keep them; one inspect for any not seen yet, or when the stream is gone."""
        with self._cond:
            current = self._stream_alive and all(i in self._states for i in ids)
        return self.current(ids) if current else self.refresh(ids)

    def removed(self, ids: Sequence[str]) -> List[Container]:
        """Containers this run has just removed (`docker rm` returned): gone now, whatever events are still on
        their way (a late `die` must not bring one back as exited)."""
        with self._cond:
            for container_id in ids:
                if container_id in self._states:
                    self._learn(dataclasses.replace(self._states[container_id], status=Status.REMOVED))
            return [self._states[i] for i in ids if i in self._states]

    def current(self, ids: Sequence[str]) -> List[Container]:
        with self._cond:
            return [self._states[i] for i in ids if i in self._states]

    def wait(self, ids: Sequence[str], verdict: Verdict, seconds: float,
             interrupts_seen: Optional[int] = None) -> WaitEnd:
        """Wait up to `seconds` until `verdict` decides; an interrupt beyond `interrupts_seen` ends it early."""
        started = time.monotonic()
        deadline = started + seconds
        seen = self._interrupts.count if interrupts_seen is None else interrupts_seen
        self.known(ids)  # containers inspected since we subscribed are kept current by events
        last_refresh = time.monotonic()
        refreshing = last_refresh - started
        try:
            while True:
                with self._cond:
                    outcome = verdict([self._states[i] for i in ids if i in self._states])
                    if outcome is not None:
                        self._note_reaction(started)
                        return outcome
                    if self._interrupts.count > seen:
                        return WaitEnd(Ended.INTERRUPTED)
                    now = time.monotonic()
                    if now >= deadline:
                        return WaitEnd(Ended.TIMEOUT)
                    self._cond.wait(min(POLL_SECONDS, deadline - now))
                    streaming = self._stream_alive
                interval = RECONCILE_SECONDS if streaming else POLL_FALLBACK_SECONDS
                if not streaming and time.monotonic() - self._subscribed_at >= RESUBSCRIBE_SECONDS:
                    self._subscribe()  # then the refresh below catches up on what the stream missed
                    last_refresh = 0.0
                if time.monotonic() - last_refresh >= interval:
                    before = time.monotonic()
                    self.refresh(ids)
                    last_refresh = time.monotonic()
                    refreshing += last_refresh - before
        finally:
            self.stats.wait_seconds += time.monotonic() - started - refreshing

    def hold(self, seconds: float) -> None:
        """Just wait (the drain floor): no interrupt shortens it. Counted as waiting, like the waits above."""
        if seconds > 0:
            time.sleep(seconds)
            self.stats.wait_seconds += seconds

    def pause(self, seconds: float, interrupts_seen: int) -> None:
        """Wait `seconds` unless an interrupt beyond `interrupts_seen` comes first."""
        started = time.monotonic()
        self._interrupts.sleep(seconds, interrupts_seen=interrupts_seen)
        self.stats.wait_seconds += time.monotonic() - started

    def _note_reaction(self, wait_started: float) -> None:
        """If an event (not our own inspect) ended the wait, record how long we took to act on it."""
        event = self._last_event
        if event is None or event.received < wait_started:
            return
        self.stats.reaction_seconds.append(time.monotonic() - event.received)
        if event.engine_time:
            self.stats.engine_reaction_seconds.append(max(0.0, time.time() - event.engine_time))
        self._last_event = None


# ------------------------------------------------------------------------------------------- verdicts (pure logic)


def evolve(container: Container, event: ContainerEvent) -> Container:
    """A container's state after an engine event. A removed container stays removed: its id is never reused."""
    if container.status == Status.REMOVED:
        return container
    if event.action == "health_status":
        return dataclasses.replace(container, health=event.health)
    if event.action == "start":
        return dataclasses.replace(container, status=Status.RUNNING)
    if event.action == "die":
        code = container.exit_code if event.exit_code is None else event.exit_code
        return dataclasses.replace(container, status=Status.EXITED, exit_code=code)
    if event.action == "destroy":
        return dataclasses.replace(container, status=Status.REMOVED)
    return container


def exit_reason(container: Container) -> str:
    if container.status == Status.REMOVED:
        return f"{container.name} was removed"
    return f"{container.name} exited with code {container.exit_code}"


def all_healthy(containers: List[Container]) -> Optional[WaitEnd]:
    """New containers with a health check: ready when every one is healthy; failed as soon as one stops."""
    for container in containers:
        if gone(container):
            return WaitEnd(Ended.FAILED, exit_reason(container))
    if containers and all(serving(c) for c in containers):
        return DONE
    return None


def still_serving(containers: List[Container]) -> Optional[WaitEnd]:
    """New containers once ready (or, without a health check, once started): only a stop or a failing health check
    decides early, and fails the deploy; otherwise the wait runs its course."""
    for container in containers:
        if gone(container):
            return WaitEnd(Ended.FAILED, exit_reason(container))
        if container.health == Health.UNHEALTHY:
            return WaitEnd(Ended.FAILED, f"{container.name} turned unhealthy")
    return None


def all_unhealthy(containers: List[Container]) -> Optional[WaitEnd]:
    """Draining: done when Docker calls every container unhealthy (or it stopped). `starting` is not enough: a new
    container being rolled back may be in a proxy's pool already, and only its failing check takes it out."""
    if all(c.health == Health.UNHEALTHY or gone(c) for c in containers):
        return DONE
    return None

"""The only place that tells what a user sees: every deploy step is a typed event, and a writer (writers.py)
renders the events.

    deploy / release / lock  --events-->  Progress  -->  PlainWriter  timestamped lines (the original tool's)
                                                    -->  TtyWriter    a live block that redraws in place
                                                    -->  JsonWriter   one JSON object per line
                                                    -->  QuietWriter  errors and the summary only

Events: `log` (info, warn, error), `detail` (multi-line diagnostics), `phase` (a service enters a phase),
`container` (a container's state, old or new), `output` (a line from compose or a pre-stop command), `plan` (what a
deploy will do, or a dry run would) and, last, `summary`. Phases are timed on one clock, from the first event to
the summary, so their durations add up to the deploy's. Every mode ends with the same one-line summary.
"""

import dataclasses
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import ClassVar, Dict, List, Optional, Tuple

from docker_reroll.vocabulary import Level, Outcome, Phase, Role, Shown


@dataclass
class Event:
    """Something that happened, at a wall time (for the reader) and on the run's clock (for durations)."""

    kind: ClassVar[str] = ""
    wall_time: float = field(default_factory=time.time, init=False)
    clock: float = field(default_factory=time.monotonic, init=False)

    def fields(self) -> Dict[str, object]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def to_json(self) -> str:
        return json.dumps({"time": stamp(self), "type": self.kind, **self.fields()}, separators=(",", ":"))


@dataclass
class Log(Event):
    kind: ClassVar[str] = "log"
    level: Level
    message: str


@dataclass
class Detail(Event):
    """Multi-line diagnostics that go with an error (health-check output, log tails)."""

    kind: ClassVar[str] = "detail"
    title: str
    text: str


@dataclass
class PhaseEntered(Event):
    kind: ClassVar[str] = "phase"
    service: Optional[str]
    phase: Phase


@dataclass
class ContainerShown(Event):
    kind: ClassVar[str] = "container"
    service: str
    id: str
    name: str
    role: Role
    state: Shown
    image: str


@dataclass
class Output(Event):
    """A line from compose, or from a pre-stop command (with the container it ran for)."""

    kind: ClassVar[str] = "output"
    source: str
    container: Optional[str]
    line: str


@dataclass
class Connections(Event):
    """Proxy mode: the connections the proxy still holds to each old container of a service, by name."""

    kind: ClassVar[str] = "connections"
    service: str
    connections: Dict[str, int]


@dataclass
class PlanShown(Event):
    """What a deploy will do (or a dry run would): `facts` are its structure, `lines` say it in words."""

    kind: ClassVar[str] = "plan"
    facts: Dict[str, object]

    @property
    def dry_run(self) -> bool:
        return bool(self.facts.get("dry_run"))

    @property
    def lines(self) -> List[str]:
        lines = self.facts.get("lines")
        return [str(line) for line in lines] if isinstance(lines, list) else []

    def fields(self) -> Dict[str, object]:
        return dict(self.facts)


@dataclass
class Summary(Event):
    kind: ClassVar[str] = "summary"
    outcome: Outcome
    exit_code: int
    message: str
    seconds: float
    phases: List[Dict[str, object]]
    services: List[Dict[str, object]]


def stamp(event: Event) -> str:
    return datetime.fromtimestamp(event.wall_time, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class PhaseSpan:
    service: Optional[str]
    phase: Phase
    seconds: float


class PhaseClock:
    """Contiguous phases on one monotonic clock: entering one ends the one before, so they sum to the total."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.spans: List[PhaseSpan] = []
        self._current: Optional[Tuple[Optional[str], Phase, float]] = None

    def enter(self, service: Optional[str], phase: Phase, now: float) -> None:
        self.close(now)
        self._current = (service, phase, now)

    @property
    def current(self) -> Optional[Tuple[Optional[str], Phase]]:
        return self._current[:2] if self._current else None

    def close(self, now: float) -> None:
        if self._current is not None:
            service, phase, since = self._current
            self.spans.append(PhaseSpan(service, phase, now - since))
            self._current = None

    def seconds(self, service: Optional[str] = None) -> Dict[str, float]:
        """Time per phase name (of one service, or all), the current phase counted up to now."""
        spans = list(self.spans)
        if self._current is not None:
            current_service, phase, since = self._current
            spans.append(PhaseSpan(current_service, phase, time.monotonic() - since))
        totals: Dict[str, float] = {}
        for span in spans:
            if service is None or span.service == service:
                totals[str(span.phase)] = totals.get(str(span.phase), 0.0) + span.seconds
        return totals


class Writer:
    """Renders events; the base class renders nothing."""

    def write(self, event: Event) -> None:
        pass

    def close(self) -> None:
        pass


class Progress:
    """Collects the events of one run and hands them to a writer. Thread-safe: pre-stop commands and the engine's
    event stream report from their own threads."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.clock = PhaseClock(self.started)
        self._container_states: Dict[str, Shown] = {}
        self.finished = False

    # -- messages

    def info(self, message: str) -> None:
        self.emit(Log(Level.INFO, message))

    def warn(self, message: str) -> None:
        self.emit(Log(Level.WARN, message))

    def error(self, message: str) -> None:
        self.emit(Log(Level.ERROR, message))

    def say(self, level: Level, message: str) -> None:
        self.emit(Log(level, message))

    def detail(self, title: str, text: str) -> None:
        self.emit(Detail(title, text.rstrip()))

    # -- structure

    def phase(self, phase: Phase, service: Optional[str] = None) -> None:
        with self._lock:
            if self.clock.current == (service, phase):
                return
            event = PhaseEntered(service, phase)
            self.clock.enter(service, phase, event.clock)
            self._write(event)

    def container(self, service: str, container_id: str, name: str, role: Role, state: Shown,
                  image: str = "") -> None:
        """A container's state, when it changed."""
        with self._lock:
            if self._container_states.get(container_id) == state:
                return
            self._container_states[container_id] = state
            self._write(ContainerShown(service, container_id, name, role, state, image))

    def output(self, source: str, line: str, container: Optional[str] = None) -> None:
        self.emit(Output(source, container, line))

    def compose_output(self, line: str) -> None:
        """A line of compose's output: captured, never written by compose itself, so that it cannot draw its own
        live view over ours (or in a narrow terminal, between our plain lines)."""
        self.output("compose", line)

    def connections(self, service: str, connections: Dict[str, int]) -> None:
        self.emit(Connections(service, dict(connections)))

    def plan(self, facts: Dict[str, object]) -> None:
        self.emit(PlanShown(facts))

    def summary(self, line: str, exit_code: int, outcome: Outcome, services: List[Dict[str, object]]) -> None:
        """The last event: the one-line summary, in every mode, with the phase durations."""
        with self._lock:
            if self.finished:
                return
            self.finished = True
            now = time.monotonic()
            self.clock.close(now)
            self._write(Summary(outcome, exit_code, line, round(now - self.started, 6),
                                [{"service": s.service, "phase": s.phase, "seconds": round(s.seconds, 6)}
                                 for s in self.clock.spans], services))

    def close(self) -> None:
        with self._lock:
            try:
                self._writer.close()
            except (OSError, ValueError):
                self._writer = Writer()  # the output is gone: the exit code is what is left to give

    def emit(self, event: Event) -> None:
        with self._lock:
            self._write(event)

    def _write(self, event: Event) -> None:
        try:
            self._writer.write(event)
        except (OSError, ValueError):
            # A closed pipe or a hung-up terminal (EIO) must never stop a deploy half-way: go on silently.
            self._writer = Writer()

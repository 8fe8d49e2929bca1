"""The only place that writes what a user sees: every deploy step is an event, and a writer renders the events.

    deploy / release / lock  --events-->  Progress  -->  PlainWriter  timestamped lines (the original tool's)
                                                    -->  TtyWriter    a live block that redraws in place
                                                    -->  JsonWriter   one JSON object per line
                                                    -->  QuietWriter  errors and the summary only

Events: `log` (info, warn, error), `detail` (multi-line diagnostics), `phase` (a service enters a phase),
`container` (a container's state, old or new), `output` (a line from compose or a pre-stop command), `plan` (a dry
run) and, last, `summary`. Phases are timed on one clock, from the first event to the summary, so their durations
add up to the deploy's. Every mode ends with the same one-line summary.
"""

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, List, Optional, TextIO

MIN_TTY_COLUMNS = 40  # narrower than this, the live block would be unreadable: plain lines instead
TTY_REFRESH_SECONDS = 0.1
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

# Container states, in the words the live display uses.
CREATED, STARTING, WAITING_HEALTHY, HEALTHY, RUNNING = "created", "starting", "waiting for healthy", "healthy", \
    "running"
UNHEALTHY, DRAINING, STOPPING, EXITED, REMOVED, PAUSED = "unhealthy", "draining", "stopping", "exited", \
    "removed", "paused"
BUSY_STATES = (STARTING, WAITING_HEALTHY, DRAINING, STOPPING)
BAD_STATES = (UNHEALTHY, EXITED)


@dataclass
class Event:
    type: str
    fields: Dict[str, object]
    wall_time: float = field(default_factory=time.time)  # for the reader
    clock: float = field(default_factory=time.monotonic)  # for durations

    def to_json(self) -> str:
        return json.dumps({"time": stamp(self), "type": self.type, **self.fields}, separators=(",", ":"))


@dataclass
class PhaseSpan:
    service: Optional[str]
    phase: str
    seconds: float


class PhaseClock:
    """Contiguous phases on one monotonic clock: entering one ends the one before, so they sum to the total."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.spans: List[PhaseSpan] = []
        self._current: Optional["tuple[Optional[str], str, float]"] = None

    def enter(self, service: Optional[str], phase: str, now: float) -> None:
        self.close(now)
        self._current = (service, phase, now)

    @property
    def current(self) -> "Optional[tuple[Optional[str], str]]":
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
                totals[span.phase] = totals.get(span.phase, 0.0) + span.seconds
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

    def __init__(self, stream: Optional[TextIO] = None, writer: Optional[Writer] = None) -> None:
        self._writer = writer or PlainWriter(stream or sys.stderr)
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.clock = PhaseClock(self.started)
        self._container_states: Dict[str, str] = {}
        self.finished = False

    # -- messages

    def info(self, message: str) -> None:
        self._emit("log", level="info", message=message)

    def warn(self, message: str) -> None:
        self._emit("log", level="warn", message=message)

    def error(self, message: str) -> None:
        self._emit("log", level="error", message=message)

    def detail(self, title: str, text: str) -> None:
        """Multi-line diagnostics (health-check output, log tails) that go with an error."""
        self._emit("detail", title=title, text=text.rstrip())

    # -- structure

    def phase(self, phase: str, service: Optional[str] = None) -> None:
        with self._lock:
            if self.clock.current == (service, phase):
                return
            event = Event("phase", {"service": service, "phase": phase})
            self.clock.enter(service, phase, event.clock)
            self._write(event)

    def container(self, service: str, container_id: str, name: str, role: str, state: str,
                  image: str = "") -> None:
        """A container's state, when it changed: `role` is old, new, or stale (stopped before the deploy)."""
        with self._lock:
            if self._container_states.get(container_id) == state:
                return
            self._container_states[container_id] = state
            self._write(Event("container", {"service": service, "id": container_id, "name": name, "role": role,
                                            "state": state, "image": image}))

    def output(self, source: str, line: str, container: Optional[str] = None) -> None:
        """A line of output from compose, or a pre-stop command (with the container it ran for)."""
        self._emit("output", source=source, container=container, line=line)

    def compose_output(self, line: str) -> None:
        """A line of compose's output: captured, never written by compose itself, so that it cannot draw its own
        live view over ours (or in a narrow terminal, between our plain lines)."""
        self.output("compose", line)

    def plan(self, plan: Dict[str, object]) -> None:
        self._emit("plan", **plan)

    def summary(self, line: str, exit_code: int, outcome: str, services: List[Dict[str, object]]) -> None:
        """The last event: the one-line summary, in every mode, with the phase durations."""
        with self._lock:
            if self.finished:
                return
            self.finished = True
            event = Event("summary", {})
            self.clock.close(event.clock)
            event.fields.update({
                "outcome": outcome, "exit_code": exit_code, "message": line,
                "seconds": round(event.clock - self.started, 6),
                "phases": [{"service": s.service, "phase": s.phase, "seconds": round(s.seconds, 6)}
                           for s in self.clock.spans],
                "services": services,
            })
            self._write(event)

    def close(self) -> None:
        with self._lock:
            try:
                self._writer.close()
            except (OSError, ValueError):
                self._writer = Writer()  # the output is gone: the exit code is what is left to give

    def _emit(self, type_: str, **fields: object) -> None:
        with self._lock:
            self._write(Event(type_, fields))

    def _write(self, event: Event) -> None:
        try:
            self._writer.write(event)
        except (OSError, ValueError):
            if isinstance(self._writer, TtyWriter):  # the live block failed: the same stream, in plain lines
                self._writer = PlainWriter(self._writer.abandon())
                self._write(event)
                return
            # A closed pipe or a hung-up terminal (EIO) must never stop a deploy half-way: go on silently.
            self._writer = Writer()


# ------------------------------------------------------------------------------------------------------ writers


def stamp(event: Event) -> str:
    return datetime.fromtimestamp(event.wall_time, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def indented(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines()) or "    (empty)"


class PlainWriter(Writer):
    """Lines like the original tool's, `2024-06-15T07:38:01.187563Z INFO scaling web from 1 to 2 containers`,
    so deploy logs read the same; compose's output in between, as `compose: ...` lines."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._outputs: Dict[Optional[str], List[str]] = {}

    def write(self, event: Event) -> None:
        line = self.render(event)
        if line is not None:
            self._stream.write(f"{stamp(event)} {line}\n")
            self._stream.flush()

    def render(self, event: Event) -> Optional[str]:
        fields = event.fields
        if event.type == "log":
            return f"{str(fields['level']).upper()} {fields['message']}"
        if event.type == "detail":
            return f"INFO {fields['title']}:\n{indented(str(fields['text']))}"
        if event.type == "output":
            source = f"{fields['source']} output for {fields['container']}" if fields["container"] else \
                str(fields["source"])
            return f"INFO {source}: {str(fields['line']).strip()}"
        if event.type == "plan":
            first, _, rest = render_plan(fields).partition("\n")
            return f"INFO {first}" + (f"\n{indented(rest)}" if rest else "")
        if event.type == "summary":
            return f"INFO {fields['message']}"  # the error itself is the one ERROR line; this sums up
        return None  # phases and container states: the log lines already say it


class QuietWriter(PlainWriter):
    """Only errors (with their diagnostics) and the summary."""


    def render(self, event: Event) -> Optional[str]:
        if event.type == "log" and event.fields["level"] != "error":  # quiet: errors, their details, the summary
            return None
        if event.type not in ("log", "detail", "summary"):
            return None
        line = super().render(event)
        return line.replace("INFO ", "ERROR ", 1) if event.type == "detail" and line else line  # an error's


class JsonWriter(Writer):
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, event: Event) -> None:
        self._stream.write(event.to_json() + "\n")
        self._stream.flush()


@dataclass
class _Row:
    label: str
    state: str
    since: float
    role: str = ""


class TtyWriter(Writer):
    """A live block, redrawn in place like `docker compose up`'s: a line per phase with its time, a line per
    container (old and new) with its state, and the latest message or compose line. Warnings, errors and
    diagnostics print in full below the block when it ends, then the summary."""

    def __init__(self, stream: TextIO, title: str = "") -> None:
        self._stream = stream
        self._title = title
        self._lock = threading.RLock()
        self._phases: List[_Row] = []
        self._containers: Dict[str, _Row] = {}
        self._status = ""
        self._below: List[str] = []  # printed in full after the block
        self._drawn = 0  # lines of the block on the screen
        self._started = time.monotonic()
        self._frame = 0
        self._closed = threading.Event()
        try:
            self._stream.write("\x1b[?25l")  # hide the cursor while redrawing
        except (OSError, ValueError):
            pass  # a terminal already gone: the first event finds out, and Progress goes on without it
        self._ticker = threading.Thread(target=self._tick, name="tty-progress", daemon=True)
        self._ticker.start()

    def write(self, event: Event) -> None:
        with self._lock:
            self._apply(event)
            if event.type == "summary":
                self._finish(str(event.fields["message"]))
            else:
                self._draw()

    def close(self) -> None:
        with self._lock:
            if not self._closed.is_set():
                self._finish("")

    def abandon(self) -> TextIO:
        """Stop redrawing, below whatever is on the screen; returns the stream for plain lines."""
        self._closed.set()
        try:
            self._stream.write("\n\x1b[?25h")
        except (OSError, ValueError):
            pass
        return self._stream

    def _apply(self, event: Event) -> None:
        fields = event.fields
        now = event.clock
        if event.type == "phase":
            if self._phases:
                self._phases[-1].state = "done"
            label = str(fields["phase"]) + (f" {fields['service']}" if fields["service"] else "")
            self._phases.append(_Row(label, "busy", now))
        elif event.type == "container":
            row = self._containers.get(str(fields["id"]))
            label = f"Container {fields['name']:<24} {fields['role']:<5}"
            if row is None or row.state != fields["state"]:
                self._containers[str(fields["id"])] = _Row(label, str(fields["state"]), now, str(fields["role"]))
        elif event.type == "log":
            self._status = str(fields["message"])
            if fields["level"] != "info":
                self._below.append(f"{str(fields['level']).upper()} {fields['message']}")
        elif event.type == "detail":
            self._below.append(f"{fields['title']}:\n{indented(str(fields['text']))}")
        elif event.type == "output":
            self._status = f"{fields['source']}: {fields['line']}".strip()
            if fields["source"] != "compose":
                self._below.append(f"{fields['source']} output for {fields['container']}: {fields['line']}")
        elif event.type == "plan":
            self._below.append(render_plan(fields))

    def _tick(self) -> None:
        while not self._closed.wait(TTY_REFRESH_SECONDS):
            with self._lock:
                if self._closed.is_set():
                    return
                self._frame += 1
                try:
                    self._draw()
                except (OSError, ValueError):
                    return

    def _lines(self, final: bool) -> List[str]:
        now = time.monotonic()
        spin = SPINNER[self._frame % len(SPINNER)]
        width = max(MIN_TTY_COLUMNS, _columns(self._stream)) - 1  # narrower since the start: lines wrap
        lines: List["tuple[str, Optional[float], str]"] = [
            (f"[+] {self._title}", now - self._started, "" if final else spin)]
        for index, row in enumerate(self._phases):
            ended = self._phases[index + 1].since if index + 1 < len(self._phases) else now
            busy = row.state == "busy" and not final
            lines.append((f" {spin if busy else '✔'} {row.label}", ended - row.since, ""))
        for row in self._containers.values():
            bad = row.state == UNHEALTHY if row.role == "old" else row.state in BAD_STATES  # old ones are to exit
            mark = spin if row.state in BUSY_STATES and not final else "✘" if bad else "✔"
            timed = row.state in BUSY_STATES
            lines.append((f" {mark} {row.label} {row.state}", now - row.since if timed else None, ""))
        rows = [_fit(text, seconds, suffix, width) for text, seconds, suffix in lines]
        if self._status and not final:
            rows.append(_fit(f"   {self._status}", None, "", width))
        limit = max(3, _rows(self._stream) - 1)
        if len(rows) > limit:  # the top of a block taller than the screen could not be redrawn
            rows = rows[:1] + [f"   ... {len(rows) - limit + 1} more lines"] + rows[len(rows) - limit + 2:]
        return rows

    def _draw(self, final: bool = False) -> None:
        if self._closed.is_set():
            return
        rows = self._lines(final)
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self._stream.write(up + "\x1b[J" + "".join(row + "\n" for row in rows))
        self._stream.flush()
        self._drawn = len(rows)

    def _finish(self, summary: str) -> None:
        try:
            self._draw(final=True)
            tail = self._below + ([summary] if summary else [])
            self._stream.write("".join(line + "\n" for line in tail) + "\x1b[?25h")
            self._stream.flush()
        finally:
            self._closed.set()


def _fit(text: str, seconds: Optional[float], suffix: str, width: int) -> str:
    """One line of the block, cut to the terminal's width, with its time at the right edge."""
    right = (f"{seconds:.1f}s" if seconds is not None else "") + (f" {suffix}" if suffix else "")
    room = max(1, width - len(right) - 1)
    if len(text) > room:
        text = text[:max(0, room - 1)] + "…"
    return f"{text:<{room}} {right}" if right else text


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 80


def _rows(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).lines
    except (OSError, ValueError, AttributeError):
        return 24


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (ValueError, AttributeError):
        return False


def choose_writer(mode: str, stream: TextIO, title: str = "") -> Writer:
    """`auto` is tty on a terminal, else plain; tty on something that is no terminal, one narrower than
    MIN_TTY_COLUMNS, or one that cannot show the block's symbols (not UTF-8), is plain too."""
    if mode in ("auto", "tty"):
        utf8 = (getattr(stream, "encoding", None) or "").lower().replace("-", "") == "utf8"
        tty = is_terminal(stream) and utf8 and _columns(stream) >= MIN_TTY_COLUMNS and os.environ.get("TERM") != "dumb"
        return TtyWriter(stream, title) if tty else PlainWriter(stream)
    if mode == "json":
        return JsonWriter(stream)
    if mode == "quiet":
        return QuietWriter(stream)
    return PlainWriter(stream)


# ----------------------------------------------------------------------------------------------------- dry run


def render_plan(plan: Dict[str, object]) -> str:
    """A dry run's plan, as text: `plan["lines"]` says it in words (the JSON event also has the structure)."""
    lines = plan.get("lines")
    return "\n".join(str(line) for line in lines) if isinstance(lines, list) else ""

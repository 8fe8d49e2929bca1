"""How the progress events (progress.py) are shown: plain timestamped lines, only errors and the summary, one JSON
object per event, or a live block that redraws in place like `docker compose up`'s."""

import os
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, TextIO, Tuple

from docker_reroll.progress import (
    ContainerShown,
    Detail,
    Event,
    Log,
    Output,
    PhaseEntered,
    PlanShown,
    Summary,
    Writer,
    stamp,
)
from docker_reroll.vocabulary import BAD, BUSY, Level, Role, Shown

MIN_TTY_COLUMNS = 40  # narrower than this, the live block would be unreadable: plain lines instead
TTY_REFRESH_SECONDS = 0.1
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def indented(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines()) or "    (empty)"


def render_plan(plan: PlanShown) -> str:
    """A plan in words (the JSON event also has its structure)."""
    return "\n".join(plan.lines)


class PlainWriter(Writer):
    """Lines like the original tool's, `2024-06-15T07:38:01.187563Z INFO scaling web from 1 to 2 containers`,
    so deploy logs read the same; compose's output in between, as `compose: ...` lines."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, event: Event) -> None:
        line = self.render(event)
        if line is not None:
            self._stream.write(f"{stamp(event)} {line}\n")
            self._stream.flush()

    def render(self, event: Event) -> Optional[str]:
        if isinstance(event, Log):
            return f"{str(event.level).upper()} {event.message}"
        if isinstance(event, Detail):
            return f"INFO {event.title}:\n{indented(event.text)}"
        if isinstance(event, Output):
            source = f"{event.source} output for {event.container}" if event.container else event.source
            return f"INFO {source}: {event.line.strip()}"
        if isinstance(event, PlanShown) and event.dry_run:  # a deploy's own plan: its log lines say it
            first, _, rest = render_plan(event).partition("\n")
            return f"INFO {first}" + (f"\n{indented(rest)}" if rest else "")
        if isinstance(event, Summary):
            return f"INFO {event.message}"  # the error itself is the one ERROR line; this sums up
        return None  # phases and container states: the log lines already say it


class QuietWriter(PlainWriter):
    """Only errors (with their diagnostics) and the summary."""

    def render(self, event: Event) -> Optional[str]:
        if isinstance(event, Log) and event.level == Level.ERROR or isinstance(event, Summary):
            return super().render(event)
        if isinstance(event, Detail):  # an error's
            return f"ERROR {event.title}:\n{indented(event.text)}"
        return None


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
    diagnostics print in full below the block when it ends, then the summary. If drawing fails (a terminal
    narrowed or gone), the same stream gets plain lines from then on."""

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
        self._plain: Optional[PlainWriter] = None  # once the live block failed
        try:
            self._stream.write("\x1b[?25l")  # hide the cursor while redrawing
        except (OSError, ValueError):
            pass  # a terminal already gone: the first event finds out
        self._ticker = threading.Thread(target=self._tick, name="tty-progress", daemon=True)
        self._ticker.start()

    def write(self, event: Event) -> None:
        with self._lock:
            if self._plain is not None:
                self._plain.write(event)
                return
            try:
                self._apply(event)
                if isinstance(event, Summary):
                    self._finish(event.message)
                else:
                    self._draw()
            except (OSError, ValueError):  # the live block failed: the same stream, in plain lines
                self._plain = PlainWriter(self.abandon())
                self._plain.write(event)

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
        now = event.clock
        if isinstance(event, PhaseEntered):
            if self._phases:
                self._phases[-1].state = "done"
            self._phases.append(_Row(str(event.phase) + (f" {event.service}" if event.service else ""), "busy",
                                     now))
        elif isinstance(event, ContainerShown):
            row = self._containers.get(event.id)
            label = f"Container {event.name:<24} {str(event.role):<5}"
            if row is None or row.state != event.state:
                self._containers[event.id] = _Row(label, str(event.state), now, str(event.role))
        elif isinstance(event, Log):
            self._status = event.message
            if event.level != Level.INFO:
                self._below.append(f"{str(event.level).upper()} {event.message}")
        elif isinstance(event, Detail):
            self._below.append(f"{event.title}:\n{indented(event.text)}")
        elif isinstance(event, Output):
            self._status = f"{event.source}: {event.line}".strip()
            if event.source != "compose":
                self._below.append(f"{event.source} output for {event.container}: {event.line}")
        elif isinstance(event, PlanShown) and event.dry_run:
            self._below.append(render_plan(event))

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
        lines: List[Tuple[str, Optional[float], str]] = [
            (f"[+] {self._title}", now - self._started, "" if final else spin)]
        for index, row in enumerate(self._phases):
            ended = self._phases[index + 1].since if index + 1 < len(self._phases) else now
            busy = row.state == "busy" and not final
            lines.append((f" {spin if busy else '✔'} {row.label}", ended - row.since, ""))
        for row in self._containers.values():
            bad = row.state == Shown.UNHEALTHY if row.role == Role.OLD else row.state in BAD  # old ones are to exit
            mark = spin if row.state in BUSY and not final else "✘" if bad else "✔"
            timed = row.state in BUSY
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

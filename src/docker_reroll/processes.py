"""Child processes, each bounded: it ends by its time limit or when the caller cancels it, with all it started.

Every child runs in a session of its own, so a terminal's Ctrl-C reaches only us and the deploy decides how to stop
it. Ending a command means ending its whole process group: the polite signal first (SIGINT for compose, which then
stops cleanly; SIGTERM for a user's command), SIGKILL after a grace period. Output is read by the same loop under
the same limits, so a background job that keeps a pipe open cannot hold a deploy: once the command itself has
exited, what it left holding its output is ended too, within seconds.
"""

import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Callable, Dict, List, Mapping, Optional, Sequence, TypeVar

from docker_reroll.errors import DockerCommandError
from docker_reroll.vocabulary import Ended

POLL_SECONDS = 0.05  # how soon a running command notices its deadline or a cancel
OUTPUT_GRACE = 1.0  # after a command exits: how long a background job it left may keep its output open
CHILD_STOP_GRACE = 10.0  # after the polite signal: how long a command gets to stop before SIGKILL
KILL_WAIT = 5.0  # after SIGKILL: a process in uninterruptible sleep may take a moment; we do not wait forever

# CPython 3.10+ starts children with vfork(), and the child restores its signal mask, with default handlers, before it
# calls setsid(): a Ctrl-C to our process group in that window kills the child before it is in a session of its own
# (seen: `docker inspect` died of SIGINT at the start of a roll-back; tests/unit/test_processes.py has the storm
# that shows it). With fork() the child keeps our handler in that window, which only records the signal.
if hasattr(subprocess, "_USE_VFORK"):
    subprocess._USE_VFORK = False


@dataclass
class CallStats:
    """Where a deploy's time goes; printed by the benchmark (DOCKER_REROLL_STATS).

    `command_seconds` is wall-clock time during which at least one command ran: concurrent pre-stop commands
    count once, so the deploy's total splits cleanly into commands, waiting, and our own overhead."""

    command_seconds: float = 0.0
    commands: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _running: int = 0
    _busy_since: float = 0.0

    def begin(self) -> None:
        with self.lock:
            if self._running == 0:
                self._busy_since = time.monotonic()
            self._running += 1
            self.commands += 1

    def end(self) -> None:
        with self.lock:
            self._running -= 1
            if self._running == 0:
                self.command_seconds += time.monotonic() - self._busy_since


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    ended: Optional[Ended] = None  # why we ended it (a timeout, the caller); None when it exited by itself


class CommandRunner:
    def __init__(self, stats: Optional[CallStats] = None) -> None:
        self.stats = stats or CallStats()

    def run(self, argv: Sequence[str], *, check: bool = True, capture: bool = True, input_bytes: bytes = b"",
            timeout: Optional[float] = None, cancel: Optional[Callable[[], bool]] = None,
            stop_signal: int = signal.SIGTERM, grace: float = CHILD_STOP_GRACE,
            env: Optional[Mapping[str, str]] = None, on_line: Optional[Callable[[str], None]] = None) -> Result:
        """Run a command and collect its output (or, without `capture`, let it print to our stderr); `on_line`
        also gets each line of it, stdout or stderr, as it comes.

        It is ended, with its process group, when `timeout` seconds pass or `cancel()` turns true: `stop_signal`,
        then SIGKILL after `grace` seconds."""
        self.stats.begin()
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if input_bytes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture else sys.stderr,
                stderr=subprocess.PIPE if capture else None,
                start_new_session=True,
                env=dict(env) if env is not None else None,
            )
        except OSError as error:
            self.stats.end()
            raise DockerCommandError(list(argv), 127, str(error)) from None
        try:
            if input_bytes:
                _feed(process, input_bytes)
            output, ended = _supervise(process, timeout, cancel, stop_signal, grace, on_line)
        finally:
            self.stats.end()
        stdout, stderr = (output.get(name, b"").decode(errors="replace") for name in ("stdout", "stderr"))
        if ended == Ended.TIMEOUT:
            stderr += f"\ngave up after {timeout:g}s"
        returncode = process.returncode if process.returncode is not None else -signal.SIGKILL
        result = Result(returncode, stdout, stderr, ended)
        if check and result.returncode != 0:
            raise DockerCommandError(list(argv), result.returncode, result.stderr)
        return result


class Session:
    """A command that answers requests for as long as it runs: a line in, lines out up to an end line that carries
    an exit status (`<end> <status>`). It asks many small questions of something inside a container with one
    `docker exec`, not one each: tens of milliseconds and the engine's work of an exec saved per question.

    Whatever goes wrong (the command exited, or did not answer in time), the session is ended and `ask` returns
    None: the caller asks another way. It runs in a session of its own, as every child does, and ends with the
    closing of its input (our exit closes it too)."""

    def __init__(self, argv: Sequence[str], end: str, stats: Optional[CallStats] = None) -> None:
        self.end = b"\n" + end.encode() + b" "
        self.stats = stats or CallStats()
        self._buffer = b""
        self.process: "Optional[subprocess.Popen[bytes]]" = None
        try:
            self.process = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        except OSError:
            pass

    def ask(self, line: str, timeout: float) -> Optional[Result]:
        """The answer to one line (which must hold no newline), as a Result with the status the end line gave."""
        process = self.process
        if process is None or process.stdin is None or process.stdout is None:
            return None
        self.stats.begin()
        try:
            process.stdin.write(line.encode() + b"\n")
            process.stdin.flush()
            deadline = time.monotonic() + timeout
            while True:
                found = self._buffer.find(self.end)
                closed = self._buffer.find(b"\n", found + len(self.end)) if found >= 0 else -1
                if closed >= 0:
                    status = self._buffer[found + len(self.end):closed].strip()
                    answer = self._buffer[:found + 1].decode(errors="replace")
                    self._buffer = self._buffer[closed + 1:]
                    code = int(status) if status.isdigit() else 1
                    return Result(code, answer, answer if code else "")
                left = deadline - time.monotonic()
                ready = select.select([process.stdout], [], [], left)[0] if left > 0 else []
                data = os.read(process.stdout.fileno(), 65536) if ready else b""
                if not data:  # no answer in time, or the command ended
                    self.close()
                    return None
                self._buffer += data
        except (OSError, ValueError):
            self.close()
            return None
        finally:
            self.stats.end()

    def close(self) -> None:
        """End it: its input closed (it should exit by itself), its process group killed if it does not."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(OUTPUT_GRACE)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            try:
                process.wait(KILL_WAIT)
            except subprocess.TimeoutExpired:
                pass
        if process.stdout is not None:
            process.stdout.close()


T = TypeVar("T")


def concurrently(actions: Sequence[Callable[[], T]]) -> List[T]:
    """Run the actions (docker calls, mostly) in threads of their own; their results in order. If any raised, the
    first such error is raised once all have ended."""
    results: List[Optional[T]] = [None] * len(actions)
    errors: List[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = actions[index]()
        except BaseException as error:  # noqa: BLE001 - handed to the caller below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


def _feed(process: "subprocess.Popen[bytes]", data: bytes) -> None:
    """Small inputs only (they fit in the pipe's buffer, so this cannot block)."""
    assert process.stdin is not None
    try:
        process.stdin.write(data)
        process.stdin.close()
    except OSError:  # the command exited without reading: its exit status tells
        pass


def _supervise(process: "subprocess.Popen[bytes]", timeout: Optional[float], cancel: Optional[Callable[[], bool]],
               stop_signal: int, grace: float,
               on_line: Optional[Callable[[str], None]] = None) -> "tuple[Dict[str, bytes], Optional[Ended]]":
    """Read the output and keep the limits until the command has exited and its output is closed.

    Ending a running command: `stop_signal` to its group, SIGKILL `grace` seconds later. Once it has exited, what
    it left behind still holding its output (a background job) gets OUTPUT_GRACE seconds, then SIGTERM, then
    SIGKILL; a job that let go of the output is not ours to end."""
    started = time.monotonic()
    pipes = {stream.fileno(): (name, stream) for name, stream in (("stdout", process.stdout),
                                                                  ("stderr", process.stderr)) if stream is not None}
    chunks: Dict[str, List[bytes]] = {name: [] for name, _ in pipes.values()}
    lines = _Lines(on_line) if on_line else None
    ended: Optional[Ended] = None
    exited = False
    schedule: List["tuple[float, Optional[int]]"] = []  # (when, signal to the group; None: stop waiting)
    try:
        while True:
            now = time.monotonic()
            if not exited and process.poll() is not None:
                exited = True
                # Its leftovers: at once if we were ending it anyway, else after a grace for the output to close.
                first = now if ended else now + OUTPUT_GRACE
                kill = first if ended else first + OUTPUT_GRACE
                schedule = [(first, signal.SIGTERM), (kill, signal.SIGKILL), (kill + OUTPUT_GRACE, None)]
            if exited and not pipes:
                break
            if not exited and not ended:
                if timeout is not None and now - started >= timeout:
                    ended = Ended.TIMEOUT
                elif cancel is not None and cancel():
                    ended = Ended.CANCELLED
                if ended:
                    schedule = [(now, stop_signal), (now + grace, signal.SIGKILL), (now + grace + KILL_WAIT, None)]
            if schedule and now >= schedule[0][0]:
                _, signum = schedule.pop(0)
                if signum is None:
                    break  # everything sent and waited for: do not hang with what cannot be ended
                _signal_group(process, signum)
            if pipes:
                _read_some(pipes, chunks, POLL_SECONDS, lines)
            else:  # no output to read (or it closed first): wake the moment the command exits
                try:
                    process.wait(POLL_SECONDS)
                except subprocess.TimeoutExpired:
                    pass
    finally:
        for _, stream in pipes.values():
            stream.close()
        if lines:
            lines.flush()
    return {name: b"".join(parts) for name, parts in chunks.items()}, ended


class _Lines:
    """Output cut into lines for a callback, per stream, as it arrives."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self._on_line = on_line
        self._partial: Dict[str, bytes] = {}

    def feed(self, name: str, data: bytes) -> None:
        *complete, rest = (self._partial.get(name, b"") + data).split(b"\n")
        self._partial[name] = rest
        for line in complete:
            self._on_line(line.decode(errors="replace").rstrip("\r"))

    def flush(self) -> None:
        for rest in self._partial.values():
            if rest:
                self._on_line(rest.decode(errors="replace"))
        self._partial.clear()


def _read_some(pipes: Dict[int, "tuple[str, IO[bytes]]"], chunks: Dict[str, List[bytes]], seconds: float,
               lines: Optional[_Lines] = None) -> None:
    """Wait up to `seconds` for output and take what there is; a closed pipe leaves `pipes`."""
    ready, _, _ = select.select(list(pipes), [], [], seconds)
    for fd in ready:
        data = os.read(fd, 65536)
        name, stream = pipes[fd]
        if data:
            chunks[name].append(data)
            if lines:
                lines.feed(name, data)
        else:
            del pipes[fd]
            stream.close()


def _signal_group(process: "subprocess.Popen[bytes]", signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # the child leads its own session, so its pid is the group's id
    except (ProcessLookupError, PermissionError):
        pass

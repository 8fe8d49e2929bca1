"""The processes a test started, found by their pid: never by a pattern (`pgrep -f`, `pkill -f`), which can match the
processes of other tests or other users of the machine."""

from __future__ import annotations

import os
import time
from typing import List


def _stat(pid: int) -> List[str]:
    """/proc/PID/stat after the command name: state, ppid, process group, ... (empty when the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()
    except OSError:
        return []


def command(pid: int) -> str:
    """The process's command name (/proc/PID/comm), "" when it is gone: what a pid found in a file names now."""
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def running(pid: int) -> bool:
    """The process exists and has not ended: a zombie (ended, not yet reaped by its parent or init) does not count."""
    fields = _stat(pid)
    return bool(fields) and fields[0] not in ("Z", "X")


def group_members(pgid: int) -> List[int]:
    """The running processes of a process group: what is left of a command that led a group of its own."""
    pids = (int(entry) for entry in os.listdir("/proc") if entry.isdigit())
    return [pid for pid in pids if (fields := _stat(pid)) and fields[2] == str(pgid) and running(pid)]


def group_left(pgid: int, within: float = 2.0) -> List[int]:
    """The group's running processes once they have had `within` seconds to die: a process killed with SIGKILL is
    gone a moment later, not at once, on a busy machine (one was still seen right after a kill)."""
    deadline = time.monotonic() + within
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


def pids_from(path: str, timeout: float = 10) -> List[int]:
    """The pids a command wrote to a file (`echo $$ >> FILE`), once it has written them."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as handle:
                text = handle.read()
            if text.endswith("\n"):
                return [int(word) for word in text.split()]
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no pid was written to {path}")
        time.sleep(0.02)

"""This machine and its processes, as far as the deploy lock needs them: who we are, and whether an owner lives.

A lock records where its owner ran: the machine (its machine id, not only its host name: cloned VMs share names),
the boot, the PID namespace (a deploy run inside a container sees other pids than the host) and the process with
its start time (a reused pid has another). Another run judges liveness only where those facts make sense, and
leaves every other case to the lock's age limit. Everything is read through `System`, so the unit tests can feed
it what a Linux host, a container or a Mac would answer.
"""

import errno
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

DEAD_STATES = ("Z", "X")  # zombie (killed, not yet reaped: in a container without init, never) and dead
MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
TOOL_TIMEOUT = 5.0  # ps, sysctl, ioreg: a stuck one must not hold the lock check


@dataclass(frozen=True)
class Identity:
    host: str
    machine_id: str  # empty when the OS does not tell
    boot_id: str
    pid_ns: str  # the PID namespace's inode; empty where there are none (macOS)


class System:
    """The OS calls the checks need; replaced by recorded answers in the unit tests."""

    platform = sys.platform

    def read(self, path: str) -> Optional[str]:
        try:
            with open(path, encoding="ascii", errors="replace") as handle:
                return handle.read()
        except OSError:
            return None

    def link(self, path: str) -> Optional[str]:
        try:
            return os.readlink(path)
        except OSError:
            return None

    def tool(self, argv: Sequence[str]) -> Optional[str]:
        """A small OS tool's output (ps, sysctl, ioreg); None if it is missing or fails."""
        try:
            done = subprocess.run(list(argv), capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    def signal0(self, pid: int) -> int:
        """kill(pid, 0): 0 if it exists and may be signalled, else the errno (ESRCH: no such process)."""
        try:
            os.kill(pid, 0)
        except OSError as error:
            return error.errno or errno.ESRCH
        return 0

    def hostname(self) -> str:
        return socket.gethostname()

    def uptime(self) -> Optional[float]:
        """Seconds since this machine booted (a duration: no clock to compare), None where it cannot tell."""
        text = self.read("/proc/uptime")
        try:
            return float(text.split()[0]) if text else None
        except ValueError:
            return None


def identity(system: System) -> Identity:
    machine = ""
    for path in MACHINE_ID_FILES:
        machine = (system.read(path) or "").strip()
        if machine:
            break
    boot = (system.read(BOOT_ID_FILE) or "").strip()
    if system.platform == "darwin":
        machine = machine or _ioreg_platform_uuid(system.tool(["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"]))
        boot = boot or (system.tool(["sysctl", "-n", "kern.bootsessionuuid"]) or "").strip()
    link = system.link("/proc/self/ns/pid") or ""  # "pid:[4026531836]"
    pid_ns = link[link.find("[") + 1:link.rfind("]")] if "[" in link else ""
    return Identity(host=system.hostname(), machine_id=machine, boot_id=boot, pid_ns=pid_ns)


def _ioreg_platform_uuid(output: Optional[str]) -> str:
    for line in (output or "").splitlines():
        if '"IOPlatformUUID"' in line:
            return line.rsplit("=", 1)[-1].strip().strip('"')
    return ""


def process_start(system: System, pid: int) -> Optional[str]:
    """The process's start time as the OS gives it (clock ticks since boot from /proc; `ps`'s lstart elsewhere);
    None when there is no such process, or it has died and awaits its parent's wait (a zombie is no deploy); ""
    when it exists but the OS does not say when it started."""
    stat = system.read(f"/proc/{pid}/stat")
    if stat is not None:
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) < 20 or fields[0] in DEAD_STATES:
            return None
        return fields[19]
    found = system.signal0(pid)
    if found == errno.ESRCH:
        return None
    if system.read("/proc/self/stat") is None:  # no /proc at all (macOS, BSD): ask ps
        listed = (system.tool(["ps", "-o", "stat=", "-o", "lstart=", "-p", str(pid)]) or "").strip()
        if listed:
            state, _, started = listed.partition(" ")
            return None if state[:1] in DEAD_STATES else " ".join(started.split())
    # /proc hides it (hidepid) or we may not signal it (EPERM): it exists, we cannot tell when it started
    return ""


def owner_is_gone(system: System, pid: int, recorded_start: str) -> bool:
    """Whether a process of this machine and PID namespace, recorded with its start time, has certainly ended."""
    started = process_start(system, pid)
    if started is None:
        return True
    return bool(started and recorded_start and started != recorded_start)  # the pid now names another process



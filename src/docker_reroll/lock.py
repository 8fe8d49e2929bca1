"""One deploy at a time per service, and a journal that lets a killed deploy be finished by the next run.

Both live on the engine, so they hold across machines and contexts: the lock is a never-started container named
`docker-reroll-lock.<project>.<service>` (the engine creates a name atomically: exactly one creator wins), whose
labels say who holds it. The journal is a second such container, `<lock>.journal`, written before the first change
and removed after the last: it records the replica count the service had, which is what a re-run must restore.
"""

import getpass
import os
import socket
import time
from dataclasses import dataclass
from typing import Dict, Optional

from docker_reroll.engine import Docker
from docker_reroll.errors import DockerCommandError, Interrupted, LockedError, RefusedError, first_line
from docker_reroll.interrupts import Interrupts
from docker_reroll.progress import Progress

LOCK_IMAGE = "docker-reroll/lock:1"  # an empty image imported on first use: no registry needed
EMPTY_TAR = b"\0" * 1024  # a tar archive with no members
LABEL = "io.docker-reroll."
LOCK_RETRY_SECONDS = 0.5
# A lock held from another machine cannot be checked for liveness; past this age it counts as abandoned.
REMOTE_LOCK_LIFETIME = 3 * 3600.0


@dataclass(frozen=True)
class Owner:
    """Who holds a lock, and enough to tell whether that process still exists."""

    user: str
    host: str
    pid: int
    pid_start: str  # the process's start time in clock ticks since boot: a reused pid has another
    boot_id: str
    since: float
    command: str

    @classmethod
    def me(cls, command: str) -> "Owner":
        return cls(user=_user(), host=socket.gethostname(), pid=os.getpid(), pid_start=_process_start(os.getpid()),
                   boot_id=_boot_id(), since=time.time(), command=command)

    def labels(self) -> Dict[str, str]:
        return {
            "user": self.user, "host": self.host, "pid": str(self.pid), "pid-start": self.pid_start,
            "boot-id": self.boot_id, "since": f"{self.since:.3f}", "command": self.command[:200],
        }

    @classmethod
    def from_labels(cls, labels: Dict[str, str]) -> "Owner":
        def get(key: str) -> str:
            return labels.get(LABEL + key, "")

        pid = get("pid")
        since = get("since")
        return cls(user=get("user"), host=get("host"), pid=int(pid) if pid.isdigit() else 0,
                   pid_start=get("pid-start"), boot_id=get("boot-id"),
                   since=float(since) if since.replace(".", "", 1).isdigit() else 0.0, command=get("command"))

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since)) if self.since else "an unknown time"
        return f"{self.user or 'someone'}@{self.host or 'unknown host'} (pid {self.pid}) since {when}"

    def stale_reason(self, me: "Owner") -> Optional[str]:
        """Why this owner is certainly gone, or None if it may still be deploying."""
        if self.host == me.host and self.boot_id == me.boot_id:
            if self.pid and _process_start(self.pid) != self.pid_start:
                return f"process {self.pid} on {self.host} is gone"
            return None
        if self.host == me.host and self.boot_id != me.boot_id:
            return f"{self.host} has restarted since"
        if me.since - self.since > REMOTE_LOCK_LIFETIME:
            return f"it is older than {int(REMOTE_LOCK_LIFETIME // 3600)} hours"
        return None


class EngineLock:
    def __init__(self, docker: Docker, project: str, service: str, progress: Progress, command: str) -> None:
        self._docker = docker
        self._progress = progress
        self.name = f"docker-reroll-lock.{project}.{service}"
        self.journal_name = f"{self.name}.journal"
        self.me = Owner.me(command)
        self.held = False
        self.journal_replicas: Optional[int] = None
        self.journal_inherited = False  # an interrupted deploy left the journal: this run finishes that deploy

    def acquire(self, timeout: float, interrupts: Interrupts) -> None:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            if self._create(self.name, {LABEL + k: v for k, v in self.me.labels().items()}):
                self.held = True
                self.journal_replicas = self._read_journal()
                self.journal_inherited = self.journal_replicas is not None
                return
            if interrupts.requested():
                raise Interrupted("interrupted while waiting for the deploy lock; nothing was changed",
                                  interrupts.first_signal or 0)
            holder = self._holder()
            if holder is not None:
                holder_id, owner = holder
                reason = owner.stale_reason(self.me)
                if reason:
                    self._progress.warn(f"taking over the deploy lock of {owner.describe()}: {reason}")
                    self._docker.remove([holder_id])  # by id: of two runs taking over, only one removes it
                    continue
                description = f"{owner.describe()}, `{owner.command}`"
            else:  # the name is taken but we cannot see by whom (it is being created or removed right now)
                description = "a deploy whose lock is being created or removed"
            if time.monotonic() >= deadline:
                raise LockedError(
                    f"another deploy of this service is running: {description}; "
                    f"wait for it, use --lock-timeout, or remove a dead lock with `docker rm {self.name}`"
                )
            if not announced:
                self._progress.info(f"waiting for the deploy by {description} to finish")
                announced = True
            interrupts.sleep(LOCK_RETRY_SECONDS)

    def write_journal(self, replicas: int) -> None:
        """Record the replica count before the first change; a journal left by a killed run is kept as it is."""
        if self.journal_replicas is not None:
            return
        if not self._create(self.journal_name, {LABEL + "replicas": str(replicas),
                                                LABEL + "since": f"{time.time():.3f}"}):
            raise RefusedError(f"cannot write the deploy journal: {self.journal_name} already exists")
        self.journal_replicas = replicas

    def release(self, keep_journal: bool = False) -> None:
        """Drop the journal (once the service holds only old or only new containers), then the lock."""
        if self.held:
            if not keep_journal:
                self._docker.remove([self.journal_name])
            self._docker.remove([self.name])
            self.held = False

    def _create(self, name: str, labels: Dict[str, str]) -> bool:
        """Create a never-started container: True if we did, False if the name is taken."""
        args = ["create", "--pull", "never", "--name", name, "--network", "none"]
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
        result = self._docker.run(*args, LOCK_IMAGE, "lock", check=False)
        if result.returncode != 0 and "No such image" in result.stderr:
            self._import_lock_image()
            result = self._docker.run(*args, LOCK_IMAGE, "lock", check=False)
        if result.returncode == 0:
            return True
        if "Conflict" in result.stderr or "already in use" in result.stderr:
            return False
        raise RefusedError(f"cannot create the deploy lock {name}: {first_line(result.stderr)}")

    def _import_lock_image(self) -> None:
        try:
            self._docker.run("import", "-", LOCK_IMAGE, input_bytes=EMPTY_TAR)
        except DockerCommandError as error:
            raise RefusedError(f"cannot create the lock image: {first_line(error.stderr)}") from None

    def _holder(self) -> "Optional[tuple[str, Owner]]":
        labels = self._labels_of(self.name)
        if labels is None:
            return None
        container_id, values = labels
        return container_id, Owner.from_labels(values)

    def _read_journal(self) -> Optional[int]:
        labels = self._labels_of(self.journal_name)
        if labels is None:
            return None
        replicas = labels[1].get(LABEL + "replicas", "")
        return int(replicas) if replicas.isdigit() else None

    def _labels_of(self, name: str) -> "Optional[tuple[str, Dict[str, str]]]":
        found = self._docker.inspect([name])
        return (found[0].id, dict(found[0].labels)) if found else None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return str(os.getuid())


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


DEAD_STATES = ("Z", "X")  # zombie (killed, not yet reaped: in a container without init, never) and dead


def _process_start(pid: int) -> str:
    """Field 22 of /proc/PID/stat; empty if the process does not exist, has died and awaits its parent's wait
    (a zombie is no deploy), or there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return ""
    if len(fields) < 20 or fields[0] in DEAD_STATES:
        return ""
    return fields[19]

"""One deploy at a time per service, and a journal that lets a killed deploy be finished by the next run.

Both live on the engine, so they hold across machines and contexts. The lock is a never-started container named
`docker-reroll-lock.<project>.<service>` (the engine creates a name atomically: exactly one creator wins), whose
labels say who holds it (see `Owner`). The journal is a volume, `<lock>.journal`, written before the first change
and removed after the last: it records the replica count the service had and the containers that served then,
which is what a re-run must restore. A volume survives `docker container prune` and `docker system prune` (common
cron jobs), which remove never-started containers; a lock removed that way mid-deploy is created again.

Fencing: a run whose lock was taken over (a laptop suspended for hours, a misjudged owner) must stop touching the
service, or its roll-back and release would undo the new owner's work. `verify` checks, by container id, that the
lock is still the one this run created; the deploy calls it before each destructive step.
"""

import getpass
import json
import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from docker_reroll.engine import Engine
from docker_reroll.errors import (
    DockerCommandError,
    Interrupted,
    LockedError,
    LockLost,
    RefusedError,
    RerollError,
    first_line,
)
from docker_reroll.host import System, identity, owner_is_gone, process_start
from docker_reroll.interrupts import Interrupts
from docker_reroll.model import Journal
from docker_reroll.processes import concurrently
from docker_reroll.progress import Progress

LOCK_IMAGE = "docker-reroll/lock:1"  # an empty image imported on first use: no registry needed
EMPTY_TAR = b"\0" * 1024  # a tar archive with no members
LABEL = "io.docker-reroll."
LOCK_RETRY_SECONDS = 0.5
# A lock whose owner cannot be checked (another machine, another PID namespace) counts as abandoned past this age.
REMOTE_LOCK_LIFETIME = 3 * 3600.0


@dataclass(frozen=True)
class Owner:
    """Who holds a lock, and enough to tell whether that process still exists."""

    user: str
    host: str
    machine_id: str  # /etc/machine-id or the Mac's platform UUID: two hosts may share a name, not this
    boot_id: str
    pid_ns: str  # PID namespace: a deploy run in a container has pids of its own
    pid: int
    pid_start: str  # the process's start time: a reused pid has another
    since: float
    command: str

    @classmethod
    def me(cls, command: str, system: System) -> "Owner":
        here = identity(system)
        return cls(user=_user(), host=here.host, machine_id=here.machine_id, boot_id=here.boot_id,
                   pid_ns=here.pid_ns, pid=os.getpid(), pid_start=process_start(system, os.getpid()) or "",
                   since=time.time(), command=command)

    def labels(self) -> Dict[str, str]:
        return {
            "user": self.user, "host": self.host, "machine-id": self.machine_id, "boot-id": self.boot_id,
            "pid-ns": self.pid_ns, "pid": str(self.pid), "pid-start": self.pid_start, "since": f"{self.since:.3f}",
            "command": self.command[:200],
        }

    @classmethod
    def from_labels(cls, labels: Dict[str, str]) -> "Owner":
        def get(key: str) -> str:
            return labels.get(LABEL + key, "")

        return cls(user=get("user"), host=get("host"), machine_id=get("machine-id"), boot_id=get("boot-id"),
                   pid_ns=get("pid-ns"), pid=_number(get("pid")), pid_start=get("pid-start"),
                   since=_seconds(get("since")), command=get("command"))

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since)) if self.since else "an unknown time"
        return f"{self.user or 'someone'}@{self.host or 'unknown host'} (pid {self.pid}) since {when}"

    def same_machine(self, me: "Owner") -> bool:
        if self.machine_id and me.machine_id:
            return self.machine_id == me.machine_id
        # Without a machine id on one side, only the same name in the same boot is surely the same machine.
        return self.host == me.host and bool(self.boot_id) and self.boot_id == me.boot_id

    def stale_reason(self, me: "Owner", system: System, age: Optional[float] = None) -> Optional[str]:
        """Why this owner is certainly gone, or None if it may still be deploying. `age`: how long ago the lock
        was taken, by the engine's clock (None: unknown); the clocks of two machines are never compared.

        Cloned VMs and images with a baked-in machine id share it, and often the host name too, so no single fact
        proves that an owner died: its process is looked up only in the very boot (a random id) and PID namespace
        it ran in, and "its machine restarted" needs the same machine id and name, another boot, and this boot to
        have begun after the lock was taken."""
        same_boot = bool(self.boot_id) and self.boot_id == me.boot_id and self.same_machine(me)
        if same_boot and self.pid_ns == me.pid_ns and self.pid:
            if owner_is_gone(system, self.pid, self.pid_start):
                return f"process {self.pid} on {self.host} is gone"
            return None
        if not same_boot and self._restarted(me, system, age):
            return f"{self.host} has restarted since"
        # Another machine, or another PID namespace here: its process cannot be looked up from this one.
        if age is not None and age > REMOTE_LOCK_LIFETIME:
            return f"it is older than {int(REMOTE_LOCK_LIFETIME // 3600)} hours by the engine's clock"
        return None

    def _restarted(self, me: "Owner", system: System, age: Optional[float]) -> bool:
        if not (self.machine_id and self.machine_id == me.machine_id and self.host == me.host):
            return False
        if not (self.boot_id and me.boot_id and self.boot_id != me.boot_id):
            return False
        uptime = system.uptime()
        return uptime is not None and age is not None and uptime < age  # this boot began after the lock


class EngineLock:
    def __init__(self, docker: Engine, project: str, service: str, progress: Progress, command: str,
                 system: Optional[System] = None) -> None:
        self._docker = docker
        self._progress = progress
        self._system = system or System()
        self.service = service
        self.name = f"docker-reroll-lock.{project}.{service}"
        self.journal_name = f"{self.name}.journal"
        self.me = Owner.me(command, self._system)
        self.lock_id = ""  # the lock container this run created: the lock is ours while the name still has it
        self.journal: Optional[Journal] = None
        self.journal_inherited = False  # an interrupted deploy left the journal: this run finishes that deploy

    @property
    def held(self) -> bool:
        return bool(self.lock_id)

    def acquire(self, timeout: float, interrupts: Interrupts) -> None:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            if self._create_lock():
                try:
                    self.journal = self._read_journal()
                except BaseException:
                    self.release(keep_journal=True)  # not left behind to block every later deploy
                    raise
                self.journal_inherited = self.journal is not None
                return
            if interrupts.requested():
                raise Interrupted("interrupted while waiting for the deploy lock; nothing was changed",
                                  interrupts.first_signal or 0)
            holder = self._holder()
            if holder is None:  # the name is taken but we cannot see by whom (it is being created or removed)
                description = "a deploy whose lock is being created or removed"
            else:
                holder_id, owner = holder
                reason = owner.stale_reason(self.me, self._system, self._age(holder_id))
                if reason and self._take_over(holder_id, owner, reason):
                    continue
                description = f"{owner.describe()}, `{owner.command}`"
            if time.monotonic() >= deadline:
                raise LockedError(
                    f"another deploy of this service is running: {description}; "
                    f"wait for it, use --lock-timeout, or remove a dead lock with `docker rm {self.name}`",
                    self.service)
            if not announced:
                self._progress.info(f"waiting for the deploy by {description} to finish")
                announced = True
            interrupts.sleep(LOCK_RETRY_SECONDS)

    def look(self) -> "tuple[Optional[str], Optional[str], Optional[Journal]]":
        """For a dry run, without taking anything: who holds the lock (None: free), why that holder is certainly
        gone (None: it may be deploying), and the journal an interrupted deploy left."""
        holder = self._holder()
        if holder is None:
            return None, None, self._read_journal()
        holder_id, owner = holder
        return f"{owner.describe()}, `{owner.command}`", owner.stale_reason(self.me, self._system,
                                                                           self._age(holder_id)), \
            self._read_journal()

    def _take_over(self, holder_id: str, owner: Owner, reason: str) -> bool:
        """Remove a dead owner's lock, by id: of two runs taking over, only one removes it, and the next create
        decides between them."""
        self._progress.warn(f"taking over the deploy lock of {owner.describe()}: {reason}")
        try:
            self._docker.remove([holder_id])
        except DockerCommandError as error:
            self._progress.warn(f"could not remove the stale lock {self.name}: {error.failures()}")
            return False
        return True

    def write_journal(self, replicas: int, serving: Sequence[str]) -> None:
        """Record the replica count and who serves, before the first change; an inherited journal is kept."""
        if self.journal is not None:
            return
        self.journal = Journal(replicas, [c[:12] for c in serving], time.time())
        self._create_journal(self.journal)

    def rewrite_journal(self, replicas: int, serving: Sequence[str]) -> None:
        """A deploy stopped between batches: the journal now records who serves, for the next run to replace."""
        try:
            self._docker.remove_volumes([self.journal_name])
        except DockerCommandError as error:
            raise RefusedError(f"cannot rewrite the deploy journal {self.journal_name}: {error.failures()}") from None
        self.journal = Journal(replicas, [c[:12] for c in serving], time.time())
        self._create_journal(self.journal)

    def verify(self, journal: bool = False) -> None:
        """Fencing, before a destructive step: is the lock still the one this run created? A lock that a prune
        removed is created again (and, with `journal`, the journal too); a lock another run holds ends this one."""
        found = self._holder()
        if found is None:
            self._progress.warn(f"the deploy lock {self.name} was removed (by `docker container prune`?): "
                                "taking it again")
            found = (self.lock_id, self.me) if self._create_lock() else self._holder()
            journal = True
        if found is not None and found[0] == self.lock_id:
            if journal and self.journal is not None and self._read_journal() is None:
                self._progress.warn(f"the deploy journal {self.journal_name} was removed: writing it again")
                self._create_journal(self.journal)
            return
        self.lock_id = ""  # not ours: nothing of it may be released by this run
        who = found[1].describe() if found else "another deploy"
        raise LockLost(f"the deploy lock of {self.service} was taken over by {who}: this run stops here and "
                       "leaves the service to it")

    def release(self, keep_journal: bool = False) -> None:
        """Drop the journal (once the service holds only old or only new containers), then the lock: only what
        is still ours, and say what could not be removed."""
        if not self.held:
            return
        try:
            self.verify()
        except LockLost as error:
            self._progress.warn(f"{error}; its lock and journal were left alone")
            return
        except RerollError as error:  # the engine failed to answer: the deploy's own outcome stands
            self._progress.warn(f"could not check the deploy lock before releasing it: {error}; remove {self.name} "
                                f"(container) and {self.journal_name} (volume) by hand once the service is settled")
            self.lock_id = ""
            return
        failures: List[str] = []

        def remove(removal: Callable[[], None]) -> None:
            try:
                removal()
            except DockerCommandError as error:
                failures.append(error.failures())

        lock_id = self.lock_id
        removals = [lambda: remove(lambda: self._docker.remove([lock_id]))]
        if not keep_journal and self.journal is not None:
            removals.append(lambda: remove(lambda: self._docker.remove_volumes([self.journal_name])))
        concurrently(removals)
        self.lock_id = ""
        if failures:
            self._progress.warn(f"could not release the deploy lock: {'; '.join(failures)}; remove "
                                f"{self.name} (container) and {self.journal_name} (volume) by hand")

    # -- engine objects

    def _create_lock(self) -> bool:
        """Create the never-started lock container: True (and its id kept) if we did, False if the name is
        taken."""
        args = ["create", "--pull", "never", "--name", self.name, "--network", "none"]
        for key, value in self.me.labels().items():
            args += ["--label", f"{LABEL}{key}={value}"]
        result = self._docker.run(*args, LOCK_IMAGE, "lock", check=False)
        if result.returncode != 0 and "No such image" in result.stderr:
            self._import_lock_image()
            result = self._docker.run(*args, LOCK_IMAGE, "lock", check=False)
        if result.returncode == 0:
            self.lock_id = result.stdout.strip()
            return True
        if "Conflict" in result.stderr or "already in use" in result.stderr:
            return False
        raise RefusedError(f"cannot create the deploy lock {self.name}: {first_line(result.stderr)}")

    def _import_lock_image(self) -> None:
        try:
            self._docker.run("import", "-", LOCK_IMAGE, input_bytes=EMPTY_TAR)
        except DockerCommandError as error:
            raise RefusedError(f"cannot create the lock image: {first_line(error.stderr)}") from None

    def _create_journal(self, journal: Journal) -> None:
        args = ["volume", "create"]
        for key, value in journal.labels().items():
            args += ["--label", f"{key}={value}"]
        result = self._docker.run(*args, self.journal_name, check=False)
        if result.returncode != 0:
            raise RefusedError(f"cannot write the deploy journal {self.journal_name}: {first_line(result.stderr)}")

    def _holder(self) -> "Optional[tuple[str, Owner]]":
        found = self._docker.inspect([self.name])
        return (found[0].id, Owner.from_labels(dict(found[0].labels))) if found else None

    def _age(self, holder_id: str) -> Optional[float]:
        """How long ago the lock container was created, by the engine's own clock (None: it cannot tell)."""
        found = self._docker.inspect([holder_id])
        now = self._docker.run("info", "--format", "{{json .SystemTime}}", check=False)
        created = rfc3339_seconds(found[0].created) if found else None
        engine_now = rfc3339_seconds(now.stdout.strip().strip('"')) if now.returncode == 0 else None
        return engine_now - created if created is not None and engine_now is not None else None

    def _read_journal(self) -> Optional[Journal]:
        result = self._docker.run("volume", "inspect", "--format", "{{json .Labels}}", self.journal_name,
                                  check=False)
        if result.returncode != 0:
            if "No such volume" in result.stderr or "no such volume" in result.stderr:
                return None
            raise RefusedError(f"cannot read the deploy journal {self.journal_name}: {first_line(result.stderr)}")
        return Journal.from_labels(json.loads(result.stdout or "null") or {})


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return str(os.getuid())


def _number(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _seconds(text: str) -> float:
    return float(text) if text.replace(".", "", 1).isdigit() else 0.0


def rfc3339_seconds(text: str) -> Optional[float]:
    """The engine's timestamps (`2026-12-01T15:20:00.123456789Z`, or with an offset) as seconds since the epoch;
    None for anything else. Nanoseconds are cut to what datetime holds."""
    from datetime import datetime

    whole, dot, rest = text.partition(".")
    digits = rest[:len(rest) - len(rest.lstrip("0123456789"))] if dot else ""
    zone = rest[len(digits):] if dot else whole[19:]
    whole = whole[:19]
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        return datetime.fromisoformat(f"{whole}.{(digits or '0')[:6]:0<6}{zone}").timestamp()
    except ValueError:
        return None

"""Whether a lock's owner is gone, from what each kind of machine answers (recorded), and the labels round trip.

`System` is what the lock reads of its machine; here it is fed the answers a Linux host, a process in another PID
namespace, a /proc mounted with hidepid, and a Mac give, since not all of them can be made on the CI machine.
"""

import errno
import io
import os
import signal
import subprocess
import time

import pytest

from docker_reroll.host import System, identity, owner_is_gone, process_start
from docker_reroll.lock import REMOTE_LOCK_LIFETIME, Owner
from docker_reroll.model import Journal


class Recorded(System):
    def __init__(self, platform="linux", files=None, links=None, tools=None, processes=None):
        self.platform = platform
        self.files = files or {}
        self.links = links or {}
        self.tools = tools or {}
        self.processes = processes or {}  # pid -> errno of kill(pid, 0)

    def read(self, path):
        return self.files.get(path)

    def link(self, path):
        return self.links.get(path)

    def tool(self, argv):
        return self.tools.get(" ".join(argv))

    def signal0(self, pid):
        return self.processes.get(pid, errno.ESRCH)

    def hostname(self):
        return "ubuntu"


def stat(state, start):
    return f"4242 (python3) {state} 1 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0"


LINUX = Recorded(files={"/etc/machine-id": "m1\n", "/proc/sys/kernel/random/boot_id": "b1\n",
                        "/proc/self/stat": stat("R", 99), "/proc/4242/stat": stat("S", 777),
                        "/proc/5000/stat": stat("Z", 888)},
                 links={"/proc/self/ns/pid": "pid:[4026531836]"}, processes={4242: 0, 5000: 0})


def owner(**changes):
    values = dict(user="u", host="ubuntu", machine_id="m1", boot_id="b1", pid_ns="4026531836", pid=4242,
                  pid_start="777", since=1000.0, command="docker reroll web")
    values.update(changes)
    return Owner(**values)


ME = owner(pid=1, pid_start="99", since=2000.0)


def test_identity_on_linux():
    here = identity(LINUX)
    assert (here.host, here.machine_id, here.boot_id, here.pid_ns) == ("ubuntu", "m1", "b1", "4026531836")


def test_a_live_owner_keeps_its_lock_and_a_dead_reused_or_zombie_one_does_not():
    assert owner().stale_reason(ME, LINUX) is None
    assert "process 4242 on ubuntu is gone" in owner(pid_start="1").stale_reason(ME, LINUX), "pid reused"
    assert "is gone" in owner(pid=4243).stale_reason(ME, LINUX)
    assert "is gone" in owner(pid=5000, pid_start="888").stale_reason(ME, LINUX), "a zombie is no deploy"


UP_A_DAY = Recorded(files={**LINUX.files, "/proc/uptime": "86400.00 170000.00\n"}, links=LINUX.links,
                    processes=LINUX.processes)
UP_A_MINUTE = Recorded(files={**LINUX.files, "/proc/uptime": "60.00 100.00\n"}, links=LINUX.links,
                       processes=LINUX.processes)


def test_same_host_name_on_another_machine_is_not_a_reboot():
    """Cloned VMs, the default `ubuntu`: their boot ids differ, and that says nothing about a reboot."""
    other_machine = owner(machine_id="m2", boot_id="b2", pid=1)
    assert other_machine.stale_reason(ME, LINUX, age=600) is None
    assert "older than 3 hours by the engine's clock" in owner(machine_id="m2", boot_id="b2").stale_reason(
        ME, LINUX, age=REMOTE_LOCK_LIFETIME + 1)
    assert owner(machine_id="m2", boot_id="b2", since=0.0).stale_reason(ME, LINUX, age=600) is None, \
        "the owner's clock (its `since`) is another machine's: only the engine's clock measures the age"
    assert "ubuntu has restarted since" in owner(boot_id="b0").stale_reason(ME, UP_A_MINUTE, age=600), \
        "same machine id and name, another boot, and this boot began after the lock was taken: a reboot"


def test_a_clone_with_the_same_machine_id_and_name_is_not_taken_for_a_reboot():
    """An image with a baked-in machine id, cloned: same id, same name, another boot, and alive. This machine has
    been up longer than the lock exists, so the lock cannot be from an earlier boot of it."""
    clone = owner(boot_id="b0")
    assert clone.stale_reason(ME, UP_A_DAY, age=600) is None
    assert clone.stale_reason(ME, UP_A_MINUTE, age=None) is None, "no age from the engine: no verdict"
    assert clone.stale_reason(ME, LINUX, age=600) is None, "no uptime here: no verdict"
    assert owner(boot_id="b0", host="other").stale_reason(ME, UP_A_MINUTE, age=600) is None, "another name"


def test_an_owner_in_another_pid_namespace_is_not_looked_up_in_ours():
    """A deploy inside a container (a CI job with --network host shares the name and the boot): pid 4243 there is
    not pid 4243 here."""
    assert owner(pid_ns="4026532000", pid=4243).stale_reason(ME, LINUX) is None
    assert "older than" in owner(pid_ns="4026532000", pid=4243).stale_reason(ME, LINUX,
                                                                            age=REMOTE_LOCK_LIFETIME + 1)


def test_engine_timestamps_are_read_with_their_zone_and_nanoseconds():
    from docker_reroll.lock import rfc3339_seconds

    assert rfc3339_seconds("2026-12-01T15:20:00.123456789Z") == rfc3339_seconds("2026-12-01T16:20:00.123456+01:00")
    assert rfc3339_seconds("2026-12-01T16:20:00.123456+01:00") - rfc3339_seconds("2026-12-01T15:20:00Z") == \
        pytest.approx(0.123456)
    assert rfc3339_seconds("junk") is None and rfc3339_seconds("") is None


def test_a_process_hidden_by_hidepid_or_not_ours_to_signal_is_alive():
    hidden = Recorded(files={"/proc/self/stat": stat("R", 99)}, processes={4242: errno.EPERM, 4243: 0})
    assert process_start(hidden, 4242) == "" and not owner_is_gone(hidden, 4242, "777")
    assert not owner_is_gone(hidden, 4243, "777")
    assert owner_is_gone(hidden, 4244, "777")


MAC_PS = "ps -o stat= -o lstart= -p 4242"
MAC = Recorded(platform="darwin",
               tools={"ioreg -rd1 -c IOPlatformExpertDevice":
                      '    "IOPlatformSerialNumber" = "C02X"\n    "IOPlatformUUID" = "5E6A-11"\n',
                      "sysctl -n kern.bootsessionuuid": "BOOT-1\n",
                      MAC_PS: "Ss   Thu Nov 26 10:00:00 2026\n",
                      "ps -o stat= -o lstart= -p 5000": "Z    Thu Nov 26 09:00:00 2026\n"},
               processes={4242: 0, 5000: 0, 1: 0})


def test_on_a_mac_without_proc_a_killed_deploy_does_not_block_forever():
    """Seen before: no /proc, so boot id and start were "" on both sides and a dead owner counted as alive."""
    here = identity(MAC)
    assert (here.machine_id, here.boot_id, here.pid_ns) == ("5E6A-11", "BOOT-1", "")
    me = owner(machine_id="5E6A-11", boot_id="BOOT-1", pid_ns="", pid=1, pid_start="x", since=2000.0)
    alive = owner(machine_id="5E6A-11", boot_id="BOOT-1", pid_ns="", pid_start="Thu Nov 26 10:00:00 2026")
    assert alive.stale_reason(me, MAC) is None
    assert "is gone" in owner(machine_id="5E6A-11", boot_id="BOOT-1", pid_ns="", pid=4243).stale_reason(me, MAC)
    assert "is gone" in owner(machine_id="5E6A-11", boot_id="BOOT-1", pid_ns="",
                              pid_start="Wed Nov 25 08:00:00 2026").stale_reason(me, MAC), "pid reused"
    assert "is gone" in owner(machine_id="5E6A-11", boot_id="BOOT-1", pid_ns="", pid=5000,
                              pid_start="Thu Nov 26 09:00:00 2026").stale_reason(me, MAC), "zombie"


def test_a_lock_from_an_older_version_without_machine_id_is_judged_by_name_and_boot():
    assert "is gone" in owner(machine_id="", pid_ns="4026531836", pid=4243).stale_reason(ME, LINUX)
    assert owner(machine_id="", boot_id="", pid=4243).stale_reason(ME, LINUX) is None


def test_owner_and_journal_labels_round_trip():
    original = owner()
    labels = {"io.docker-reroll." + k: v for k, v in original.labels().items()}
    assert Owner.from_labels(labels) == original
    assert "u@ubuntu (pid 4242)" in original.describe()
    journal = Journal(3, ["aaaaaaaaaaaa", "bbbbbbbbbbbb"], 12.5)
    assert Journal.from_labels(journal.labels()) == journal
    assert Journal.from_labels({}) is None


def test_this_machine_and_a_real_zombie():
    """The real System on this Linux machine: a killed, unreaped child is gone; a live one is not."""
    system = System()
    child = subprocess.Popen(["sleep", "600"])
    started = process_start(system, child.pid)
    assert started and not owner_is_gone(system, child.pid, started)
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert owner_is_gone(system, child.pid, started)
    child.wait()
    here = identity(system)
    assert here.boot_id and here.pid_ns


# ----------------------------------------------------------------- every result checked (recorded engine answers)


def test_one_missing_container_does_not_hide_another_ones_failure():
    from docker_reroll.engine import Docker
    from docker_reroll.errors import DockerCommandError
    from docker_reroll.processes import Result

    class Runner:
        def __init__(self, result):
            self.result = result

        def run(self, argv, **kwargs):
            return self.result

    def remove(result):
        Docker("docker", [], [], {}, Runner(result)).remove(["1111", "2222", "3333"])

    stderr = ("Error response from daemon: No such container: 1111\n"
              "Error response from daemon: removal of container 2222 is already in progress\n")
    with pytest.raises(DockerCommandError) as failed:
        remove(Result(1, "3333\n", stderr))
    assert failed.value.failures() == "Error response from daemon: removal of container 2222 is already in progress"
    remove(Result(0, "", "Error response from daemon: No such container: 1111\n"))  # already gone: no failure
    with pytest.raises(DockerCommandError) as failed:
        remove(Result(1, "", ""))
    assert failed.value.failures() == "exit 1"


class FakeEngine:
    """Just enough of `Docker` for the lock: the lock name is held by a dead owner whose lock cannot be removed."""

    def __init__(self, holder_labels, rm_failure):
        self.holder_labels = holder_labels
        self.rm_failure = rm_failure
        self.removals = 0

    def run(self, *args, **kwargs):
        from docker_reroll.processes import Result

        if args[0] == "create":
            return Result(1, "", "Conflict. The container name is already in use")
        return Result(1, "", "Error: No such volume")

    def inspect(self, ids):
        from docker_reroll.model import Container

        return [Container(id="ab" * 32, name=ids[0], status="created", health=None, labels=self.holder_labels)]

    def remove(self, ids):
        from docker_reroll.errors import DockerCommandError

        self.removals += 1
        raise DockerCommandError(["docker", "rm", *ids], 1, self.rm_failure)


def test_a_takeover_whose_removal_fails_says_why_waits_between_tries_and_respects_the_timeout():
    """Seen before: the `rm` result was ignored and the loop retried at once, spinning past --lock-timeout."""
    import io

    from docker_reroll.errors import LockedError
    from docker_reroll.interrupts import Interrupts
    from docker_reroll.lock import LOCK_RETRY_SECONDS, EngineLock
    from docker_reroll.progress import Progress
    from docker_reroll.writers import PlainWriter

    dead = owner(pid=4243)  # no such process on the recorded machine
    labels = {"io.docker-reroll." + k: v for k, v in dead.labels().items()}
    engine = FakeEngine(labels, "Error response from daemon: permission denied")
    out = io.StringIO()
    lock = EngineLock(engine, "p", "web", Progress(PlainWriter(out)), "docker reroll web", system=LINUX)
    started = time.monotonic()
    try:
        lock.acquire(1.2, Interrupts())
    except LockedError as error:
        assert "another deploy of this service is running" in str(error)
    else:
        raise AssertionError("no LockedError")
    elapsed = time.monotonic() - started
    assert 1.2 <= elapsed < 1.2 + LOCK_RETRY_SECONDS + 0.5
    assert engine.removals <= 4, "one try per retry interval, not a spin"
    assert "could not remove the stale lock docker-reroll-lock.p.web: Error response from daemon: permission " \
           "denied" in out.getvalue()


class FlakyEngine:
    """The few engine calls a lock makes, with the journal read and the lock inspect failing on demand."""

    def __init__(self, journal_fails=False, inspect_fails=False):
        self.journal_fails = journal_fails
        self.inspect_fails = inspect_fails
        self.removed = []

    def run(self, *args, check=True, **kwargs):
        from docker_reroll.errors import RefusedError

        if args[0] == "create":
            return subprocess.CompletedProcess(args, 0, "lock-id\n", "")
        if args[:2] == ("volume", "inspect") and self.journal_fails:
            raise RefusedError("cannot read the deploy journal: context deadline exceeded")
        return subprocess.CompletedProcess(args, 1, "", "no such volume")

    def inspect(self, names):
        from docker_reroll.errors import DockerCommandError

        if self.inspect_fails:
            raise DockerCommandError(["docker", "inspect"], 1, "context deadline exceeded")
        return [type("Found", (), {"id": "lock-id", "labels": {}})()]

    def remove(self, ids):
        self.removed += ids

    def remove_volumes(self, names):
        self.removed += names


def engine_lock(engine):
    import io

    from docker_reroll.interrupts import Interrupts
    from docker_reroll.lock import EngineLock
    from docker_reroll.progress import Progress
    from docker_reroll.writers import PlainWriter

    stream = io.StringIO()
    lock = EngineLock(engine, "p", "web", Progress(PlainWriter(stream)), "docker reroll web", system=LINUX)
    return lock, stream, Interrupts()


def test_a_lock_whose_journal_cannot_be_read_is_not_left_behind():
    import pytest

    from docker_reroll.errors import RefusedError

    engine = FlakyEngine(journal_fails=True)
    lock, _, interrupts = engine_lock(engine)
    with pytest.raises(RefusedError):
        lock.acquire(0, interrupts)
    assert engine.removed == ["lock-id"] and not lock.held


def test_an_engine_error_at_release_is_a_warning_not_the_deploys_outcome():
    engine = FlakyEngine()
    lock, stream, interrupts = engine_lock(engine)
    lock.acquire(0, interrupts)
    engine.inspect_fails = True
    lock.release()  # must not raise: the deploy's own result stands
    assert not lock.held and "could not check the deploy lock before releasing it" in stream.getvalue()
    assert engine.removed == [], "what could not be checked as ours is not removed"


def test_a_locks_age_is_measured_on_the_engines_clock():
    """A laptop whose clock is a day off must not judge another machine's lock by it."""
    from docker_reroll.lock import EngineLock
    from docker_reroll.model import Container
    from docker_reroll.processes import Result
    from docker_reroll.progress import Progress
    from docker_reroll.writers import PlainWriter

    class Engine:
        def inspect(self, ids):
            return [Container(id="ab" * 32, name="lock", status="created", health=None,
                              created="2026-12-01T10:00:00.5Z")]

        def run(self, *args, **kwargs):
            assert args[:1] == ("info",)
            return Result(0, '"2026-12-01T14:00:01.5Z"\n', "")

    lock = EngineLock(Engine(), "p", "web", Progress(PlainWriter(io.StringIO())), "docker reroll web", system=LINUX)
    assert lock._age("ab" * 32) == pytest.approx(4 * 3600 + 1)

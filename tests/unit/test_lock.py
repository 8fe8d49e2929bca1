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
from fakeengine import FakeEngine, FakeRunner


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


# ------------------------------------------------------------------------- every result checked (the fake engine)


def test_one_missing_container_does_not_hide_another_ones_failure():
    from docker_reroll.engine import Docker
    from docker_reroll.errors import DockerCommandError
    from docker_reroll.processes import Result

    def remove(result):
        Docker("docker", [], [], {}, FakeRunner(result)).remove(["1111", "2222", "3333"])

    stderr = ("Error response from daemon: No such container: 1111\n"
              "Error response from daemon: removal of container 2222 is already in progress\n")
    with pytest.raises(DockerCommandError) as failed:
        remove(Result(1, "3333\n", stderr))
    assert failed.value.failures() == "Error response from daemon: removal of container 2222 is already in progress"
    remove(Result(0, "", "Error response from daemon: No such container: 1111\n"))  # already gone: no failure
    with pytest.raises(DockerCommandError) as failed:
        remove(Result(1, "", ""))
    assert failed.value.failures() == "exit 1"


LOCK_NAME = "docker-reroll-lock.p.web"


def engine_lock(engine):
    from docker_reroll.lock import EngineLock
    from docker_reroll.progress import Progress
    from docker_reroll.writers import PlainWriter

    stream = io.StringIO()
    return EngineLock(engine, "p", "web", Progress(PlainWriter(stream)), "docker reroll web", system=LINUX), stream


def held_by(engine, holder):
    """The lock container, created on the engine by `holder`'s run (as lock.py creates it); its id."""
    labels = [word for key, value in holder.labels().items() for word in ("--label", f"io.docker-reroll.{key}={value}")]
    return engine.run("create", "--name", LOCK_NAME, *labels, "docker-reroll/lock:1", "lock").stdout.strip()


def test_a_takeover_whose_removal_fails_says_why_waits_between_tries_and_respects_the_timeout():
    """Seen before: the `rm` result was ignored and the loop retried at once, spinning past --lock-timeout."""
    from docker_reroll.errors import LockedError
    from docker_reroll.interrupts import Interrupts
    from docker_reroll.lock import LOCK_RETRY_SECONDS

    engine = FakeEngine()
    engine.fail("rm", held_by(engine, owner(pid=4243)), "permission denied")  # no such process on LINUX: dead
    lock, out = engine_lock(engine)
    started = time.monotonic()
    with pytest.raises(LockedError, match="another deploy of this service is running"):
        lock.acquire(1.2, Interrupts())
    elapsed = time.monotonic() - started
    assert 1.2 <= elapsed < 1.2 + LOCK_RETRY_SECONDS + 0.5
    assert 1 <= engine.calls.count("rm") <= 4, "one try per retry interval, not a spin"
    assert "could not remove the stale lock docker-reroll-lock.p.web: Error response from daemon: permission " \
           "denied" in out.getvalue()


def test_a_lock_whose_journal_cannot_be_read_is_not_left_behind():
    from docker_reroll.errors import RefusedError
    from docker_reroll.interrupts import Interrupts

    engine = FakeEngine()
    engine.fail("volume inspect", LOCK_NAME + ".journal", "context deadline exceeded")
    lock, _ = engine_lock(engine)
    with pytest.raises(RefusedError, match="cannot read the deploy journal .*: .*context deadline exceeded"):
        lock.acquire(0, Interrupts())
    assert engine.inspect([LOCK_NAME]) == [] and not lock.held


def test_an_engine_error_at_release_is_a_warning_not_the_deploys_outcome():
    from docker_reroll.interrupts import Interrupts

    engine = FakeEngine()
    lock, stream = engine_lock(engine)
    lock.acquire(0, Interrupts())
    lock_id = lock.lock_id
    engine.fail("inspect", LOCK_NAME, "context deadline exceeded")
    lock.release()  # must not raise: the deploy's own result stands
    assert not lock.held and "could not check the deploy lock before releasing it" in stream.getvalue()
    assert [c.name for c in engine.inspect([lock_id])] == [LOCK_NAME], "what could not be checked as ours stays"


@pytest.mark.parametrize("engine_age, taken_over", [(REMOTE_LOCK_LIFETIME + 1, True), (3600.0, False)])
def test_a_locks_age_is_measured_on_the_engines_clock(engine_age, taken_over):
    """A laptop whose clock is a day off must not judge another machine's lock by it: the lock of a deploy on
    another machine, taken just now by its clock (`since`), is as old as the engine's clock says."""
    from docker_reroll.errors import LockedError
    from docker_reroll.interrupts import Interrupts

    engine = FakeEngine()
    held_by(engine, owner(machine_id="m2", boot_id="b2", since=time.time()))
    engine.clock_skew = engine_age  # the engine's clock has moved on since it created the lock
    lock, out = engine_lock(engine)
    if taken_over:
        lock.acquire(0, Interrupts())
        assert lock.held and "it is older than 3 hours by the engine's clock" in out.getvalue()
    else:
        with pytest.raises(LockedError):
            lock.acquire(0, Interrupts())

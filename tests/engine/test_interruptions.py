"""Fault injection under load: signals in every phase, a killed plugin, a broken event stream, a concurrent deploy.

Every scenario runs the HAProxy example stack (examples/haproxy) with 8 keep-alive clients busy against the proxy
the whole time, and checks the invariant that makes an interrupt safe: when the tool exits, the service holds either
exactly the old containers (same ids, all running and healthy, v1 still answering: cancelled before anything old was
touched) or exactly N new ones (the deploy completed), never both, never none, never another count; no lock or
journal is left; and no request failed. The load report is printed so CI logs show the figures.

Each test collects every broken expectation before failing, so one run shows all that went wrong.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timezone

import pytest

from dockerfixtures import (
    DRAIN,
    JSON_STREAM,
    Run,
    Stream,
    child_pid,
    finish,
    haproxy_servers,
    journal_replicas,
    load_on,
    lock_and_journal,
    project_events,
    read_until_said,
    start_reroll,
    start_stack,
    versions_after,
)

HEALTH_TIMEOUT = ["--healthcheck-timeout", "20"]  # only bounds a wait that goes wrong
OLD, NEW = "old containers only", "new containers only"
DEPLOY_DEADLINE = 90  # seconds: a background deploy still running after this is killed and the test fails
EXIT_AFTER_SIGNAL = 20  # seconds from an interrupt to the exit: a roll-back or the rest of a drain, never a hang
REACTION = 2.0  # seconds from an interrupt to the start of the roll-back (waits notice interrupts within 50 ms)
STARTING = {"APP_STARTUP_DELAY": "4"}  # the new container needs ~4 s to turn healthy: the health wait lasts


# ------------------------------------------------------------------------------------------------------- helpers


def event_time(event):
    """An event's `time`, in epoch seconds."""
    return datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def roll_back_began(run, service="app"):
    """When the service entered its `roll back` phase (epoch seconds), None if it never did."""
    found = run.typed("phase", service=service, phase="roll back")
    return event_time(found[0]) if found else None


class Deploy:
    """`docker reroll app ARGS` in the background (start_reroll: the real docker CLI, in its own process group),
    its progress the JSON stream, driven phase by phase through its log events. A watchdog kills it if it outlives
    DEPLOY_DEADLINE."""

    def __init__(self, stack, *args, **env):
        self.process = start_reroll(stack, "app", *args, extra_env={**JSON_STREAM, **env})
        self.since = time.time()
        self.started = time.monotonic()
        self.output = ""
        self.signalled = []  # wall-clock times of the signals sent
        self.ended = None  # wall-clock time of the exit (the load generator's time base)
        self.seconds = None
        self._watchdog = threading.Timer(DEPLOY_DEADLINE, self.kill)
        self._watchdog.daemon = True
        self._watchdog.start()

    def reach(self, words, timeout=60):
        """Block until an info log event holds these words."""
        self.output += read_until_said(self.process, words, "info", timeout=timeout)

    @property
    def plugin_pid(self):
        return child_pid(self.process.pid)

    def signal(self, signum, target="group"):
        """Signal `target`: "group" is the whole process group, docker CLI and plugin, like a terminal's Ctrl-C;
        "cli" the docker CLI process alone; "cli-then-plugin" the CLI, then the plugin 50 ms later (the same group
        signal when the plugin's Python handler runs after the CLI has closed the socket, as it can under load)."""
        plugin = self.plugin_pid if target == "cli-then-plugin" else None
        with contextlib.suppress(ProcessLookupError):
            if target == "group":
                os.killpg(self.process.pid, signum)
            else:
                os.kill(self.process.pid, signum)
            if plugin:
                time.sleep(0.05)
                os.kill(plugin, signum)
        self.signalled.append(time.time())

    def finish(self):
        self.output += finish(self.process, timeout=DEPLOY_DEADLINE)
        self._watchdog.cancel()
        self.ended = time.time()
        self.seconds = time.monotonic() - self.started
        return self.process.returncode

    @property
    def stream(self):
        """What the finished deploy wrote, parsed (`output` is the raw stream)."""
        return Stream.of(Run(self.process.returncode, "", self.output, self.seconds))

    def after_signal(self, index=0):
        """Seconds from the `index`-th signal to the exit."""
        return self.ended - self.signalled[index]

    def kill(self):
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture
def deploys(stack):
    """Starts background deploys; one still running when the test ends (it failed) is killed before the stack
    is removed."""
    started = []

    def start(*args, **env):
        deploy = Deploy(stack, *args, **env)
        started.append(deploy)
        return deploy

    yield start
    for deploy in started:
        deploy.kill()


def invariant_problems(stack, expected, old, report, exited_at, replicas=None, version="v2"):
    """The invariant: exactly the old containers, untouched, or exactly `replicas` new ones on `version`; the
    version answering through the proxy after the exit is the one the service holds; no lock, no journal; no
    failed request. Returns what is broken."""
    problems = []
    now = stack.containers()
    seen = [(c.name, c.short_id, c.status, c.health) for c in now]
    old_ids = [c.id for c in old]
    if expected == OLD:
        serving = "v1"
        if [c.id for c in now] != old_ids:
            problems.append(f"expected exactly the old containers {[c[:12] for c in old_ids]}, found {seen}")
        elif not all(c.running and c.health == "healthy" for c in now):
            problems.append(f"old containers touched: {seen}")
    else:
        serving = version
        if len(now) != replicas or {c.id for c in now} & set(old_ids):
            problems.append(f"expected exactly {replicas} new container(s), found {seen}")
        elif not all(c.running and c.health == "healthy" for c in now):
            problems.append(f"new containers not all healthy: {seen}")
        elif {stack.env_of(c)["APP_VERSION"] for c in now} != {version}:
            problems.append(f"new containers not all on {version}")
    answering = versions_after(report, exited_at)
    if answering != {serving}:
        problems.append(f"after the exit {sorted(answering) or 'nothing'} answered, expected {serving}")
    if lock_and_journal(stack):
        problems.append(f"left behind: {lock_and_journal(stack)}")
    if report.failed:
        problems.append(f"{report.failed} failed request(s): {report.summary()}")
    return problems


DRAIN_FLOOR = 1.0  # --drain-time's default


def undrained(stack, since, until):
    """Containers whose drain (`touch /.dead`) began and that were stopped too soon, from the engine's own events:
    every drained container must keep running at least the floor after the pre-stop command, and one that was
    healthy when its drain began (so Docker can report the change) must be reported unhealthy first."""
    events = project_events(stack, since - 1, until + 1)
    problems = []
    touched = {}
    for moment, container, action in events:
        if action == "exec_start: touch /.dead":
            touched.setdefault(container, moment)
    for container, began in touched.items():
        health_before = [action for moment, c, action in events
                         if c == container and moment < began and action.startswith("health_status")]
        was_healthy = bool(health_before) and health_before[-1] == "health_status: healthy"
        later = [(moment, action) for moment, c, action in events if c == container and moment >= began]
        unhealthy = next((moment for moment, action in later if action == "health_status: unhealthy"), None)
        killed = next((moment for moment, action in later if action in ("kill", "die")), None)
        if killed is None:
            continue
        if killed - began < DRAIN_FLOOR:
            problems.append(f"container {container[:12]} was stopped {killed - began:.2f}s after its drain began, "
                            f"before the {DRAIN_FLOOR:g}s floor")
        if was_healthy and (unhealthy is None or unhealthy > killed):
            problems.append(f"container {container[:12]} was stopped {killed - began:.2f}s after its drain began, "
                            "before Docker reported it unhealthy")
    return problems


def verify(problems, output):
    assert not problems, "\n".join(["", *problems, "--- the deploy's progress:", output])


def drained(run):
    """The roll-forward drain waited until the old containers were reported unhealthy: `NAMES unhealthy`, said only
    in its log (the display shows them draining until they are gone)."""
    return any(m.endswith(" unhealthy") and not m.startswith(("waiting", "draining")) for m in run.logs("info"))


# ------------------------------------------------------------------------------------------- 1, 2: one interrupt


@pytest.mark.parametrize("signum, target, marker, delay, args, env, replicas, expected", [
    pytest.param(signal.SIGINT, "group", "scaling app from", 0, [], {}, 1, OLD, id="SIGINT-scale-up"),
    pytest.param(signal.SIGINT, "group", "new containers:", 0, [], STARTING, 1, OLD, id="SIGINT-before-health-wait"),
    pytest.param(signal.SIGINT, "group", "to be healthy", 0.2, [], STARTING, 1, OLD, id="SIGINT-health-wait"),
    pytest.param(signal.SIGINT, "group", "after healthy", 0.2, ["--wait-after-healthy", "5"], {}, 2, OLD,
                 id="SIGINT-wait-after-healthy-2-replicas"),
    pytest.param(signal.SIGINT, "group", "to be unhealthy", 0.2, [], {}, 2, NEW, id="SIGINT-pre-stop-wait-2-replicas"),
    pytest.param(signal.SIGINT, "cli-then-plugin", "to be unhealthy", 0.2, [], {}, 2, NEW,
                 id="SIGINT-pre-stop-wait-2-replicas-plugin-handler-late"),
    pytest.param(signal.SIGINT, "group", "stopping ", 0, [], {}, 1, NEW, id="SIGINT-stop"),
    pytest.param(signal.SIGTERM, "cli", "to be healthy", 0.2, [], STARTING, 1, OLD, id="SIGTERM-docker-cli-only"),
    pytest.param(signal.SIGHUP, "group", "to be healthy", 0.2, [], STARTING, 1, OLD, id="SIGHUP-health-wait"),
])
def test_an_interrupt_rolls_back_before_the_drain_and_forward_after(stack, deploys, signum, target, marker, delay,
                                                                    args, env, replicas, expected):
    """`delay`: how far into the phase the signal comes; 0 right at its first line (a phase that may be short),
    0.2 s for a wait (the boundary just before a wait is a case of its own)."""
    old = start_stack(stack, replicas)
    name = signal.Signals(signum).name

    with load_on(stack) as load:
        deploy = deploys(*DRAIN, *HEALTH_TIMEOUT, *args, APP_VERSION="v2", **env)
        deploy.reach(marker)
        time.sleep(delay)
        deploy.signal(signum, target)
        code = deploy.finish()
    report = load.report()

    run = deploy.stream
    problems = invariant_problems(stack, expected, old, report, deploy.ended, replicas=replicas)
    problems += undrained(stack, deploy.since, deploy.ended)
    # The docker CLI relays only SIGINT and SIGTERM to its plugin; SIGHUP kills it outright (Go's default), so its
    # own status is death by SIGHUP, which a shell reports as 129 as well; the plugin's verdict is in its summary.
    if not (code == 128 + signum or (signum == signal.SIGHUP and code == -signal.SIGHUP)):
        problems.append(f"exit {code}, expected {128 + signum}")
    if run.outcome != "interrupted" or run.summary["exit_code"] != 128 + signum:
        problems.append(f"summary: {run.outcome}, exit {run.summary['exit_code']}, expected interrupted, "
                        f"exit {128 + signum}")
    rolled_back_at = roll_back_began(run)
    if expected == OLD:
        if run.result("app") != "interrupted (rolled back)":
            problems.append(f"no roll-back for {name} reported: app {run.result('app')}")
        if rolled_back_at is None or rolled_back_at - deploy.signalled[0] > REACTION:
            late = f"{rolled_back_at - deploy.signalled[0]:.2f}s" if rolled_back_at else "never"
            healthy = " (the new containers were healthy first)" if run.containers(role="new", state="healthy") \
                else ""
            problems.append(f"the roll-back began {late} after the signal{healthy}, expected within {REACTION}s")
    else:
        if run.result("app") != "deployed" or "roll back" in run.phases("app"):
            problems.append(f"{name} after the point of no return did not finish the deploy: app "
                            f"{run.result('app')}, phases {run.phases('app')}")
        if not drained(run):
            problems.append("one interrupt cut the drain short: no 'unhealthy' line before the stop")
    print(f"[{stack.name}] {name} at {marker!r} -> exit {code}, {deploy.after_signal():.2f}s after the signal, "
          f"{deploy.seconds:.2f}s in all" + (f", roll-back began {rolled_back_at - deploy.signalled[0]:.2f}s after "
                                             "the signal" if rolled_back_at else ""))
    if deploy.after_signal() > EXIT_AFTER_SIGNAL:
        problems.append(f"exited {deploy.after_signal():.1f}s after the signal")
    verify(problems, deploy.output)


# ---------------------------------------------------------------------------------------- 3: a second Ctrl-C


def test_a_second_sigint_during_the_drain_finishes_at_once_with_only_new_containers(stack, deploys):
    old = start_stack(stack, 2)

    with load_on(stack) as load:
        deploy = deploys(*DRAIN, *HEALTH_TIMEOUT, APP_VERSION="v2")
        deploy.reach("to be unhealthy")
        deploy.signal(signal.SIGINT)
        # A person pressing Ctrl-C twice, once HAProxy dropped the draining containers (their /health fails since
        # the pre-stop command): ~0.1-0.4 s on a quiet machine, what the second Ctrl-C skips is Docker's verdict.
        wait_dropped_by_proxy(stack, old)
        deploy.signal(signal.SIGINT)
        code = deploy.finish()
    report = load.report()

    print(f"[{stack.name}] second SIGINT -> exit {code} {deploy.after_signal(1):.2f}s later")
    problems = invariant_problems(stack, NEW, old, report, deploy.ended, replicas=2)
    if code != 130:
        problems.append(f"exit {code}, expected 130")
    if "forcefully exiting" in deploy.output:  # the docker CLI's own words, beside the plugin's stream
        problems.append("the docker CLI had to kill the plugin")
    run = deploy.stream
    if (run.outcome, run.summary["exit_code"], run.result("app")) != ("interrupted", 130, "deployed"):
        problems.append(f"SIGINT did not finish the deploy: {run.outcome}, exit {run.summary['exit_code']}, app "
                        f"{run.result('app')}")
    if deploy.after_signal(1) > 5:
        problems.append(f"exited {deploy.after_signal(1):.1f}s after the second SIGINT: a second interrupt skips "
                        "the rest of the drain wait (stop, remove, done)")
    verify(problems, deploy.output)


def wait_dropped_by_proxy(stack, containers, timeout=10):
    """Until the example's HAProxy (its runtime API: 127.0.0.1:9999 in its container) has taken these containers
    out of service."""
    addresses = {address for c in containers for address in c.addresses.values()}
    deadline = time.monotonic() + timeout
    while True:
        serving = [s for s in haproxy_servers(stack, "app", api_port=9999)
                   if s.address in addresses and not s.down and not s.maint]
        if not serving:
            return
        assert time.monotonic() < deadline, f"HAProxy still serves {[s.name for s in serving]} after {timeout}s"
        time.sleep(0.05)


# ------------------------------------------------------------------------------------ 4: SIGKILL, then a re-run


def test_a_killed_deploy_is_finished_by_the_next_run_with_zero_failed_requests(stack, deploys):
    old = start_stack(stack, 2)
    lock = f"docker-reroll-lock.{stack.name}.app"

    with load_on(stack) as load:
        victim = deploys(*DRAIN, *HEALTH_TIMEOUT, "--wait-after-healthy", "30", APP_VERSION="v2")
        victim.reach("waiting 30s after healthy")
        os.kill(victim.plugin_pid, signal.SIGKILL)
        victim.finish()
        halfway = stack.containers()
        assert len(halfway) == 4, [(c.name, c.status) for c in halfway]
        assert lock_and_journal(stack) == [lock, f"{lock}.journal"], "the killed run leaves lock and journal"
        assert journal_replicas(stack) == "2"

        rerun = stack.reroll_json("app", *DRAIN, *HEALTH_TIMEOUT, extra_env={"APP_VERSION": "v3"}, timeout=120)
        ended = time.time()
    report = load.report()

    print(f"[{stack.name}] re-run after SIGKILL -> exit {rerun.returncode} in {rerun.seconds:.2f}s")
    problems = invariant_problems(stack, NEW, old + halfway, report, ended, replicas=2, version="v3")
    problems += undrained(stack, victim.since, ended)
    if rerun.returncode != 0 or rerun.outcome != "deployed":
        problems.append(f"re-run exit {rerun.returncode}, {rerun.outcome}")
    if (rerun.plan("app")["journal"] or {}).get("replicas") != 2 or not rerun.said("taking over the deploy lock"):
        problems.append("the re-run did not take over and finish the interrupted deploy (its journal, 2 replicas)")
    verify(problems, rerun.run.stderr)


# -------------------------------------------------------------------------------- 5: a broken event stream


def events_child(plugin_pid):
    """The plugin's `docker events` process."""
    found = subprocess.run(["pgrep", "-P", str(plugin_pid), "-f", "docker.*events"], capture_output=True,
                           text=True).stdout.split()
    assert len(found) == 1, f"expected one `docker events` child of {plugin_pid}, found {found}"
    return int(found[0])


def test_a_broken_event_stream_falls_back_to_polling_and_the_deploy_completes(stack, deploys, tmp_path):
    [old] = start_stack(stack, 1)
    stats = tmp_path / "stats.json"

    with load_on(stack) as load:
        deploy = deploys(*DRAIN, *HEALTH_TIMEOUT, APP_VERSION="v2", APP_STARTUP_DELAY="3",
                         DOCKER_REROLL_STATS=str(stats))
        deploy.reach("to be healthy")
        os.kill(events_child(deploy.plugin_pid), signal.SIGKILL)
        code = deploy.finish()
    report = load.report()

    figures = json.loads(stats.read_text())
    print(f"[{stack.name}] event stream killed -> exit {code} in {deploy.seconds:.2f}s; "
          f"used_polling={figures['used_polling']} events_received={figures['events_received']}")
    problems = invariant_problems(stack, NEW, [old], report, deploy.ended, replicas=1)
    problems += undrained(stack, deploy.since, deploy.ended)
    if code != 0:
        problems.append(f"exit {code}")
    if not figures["used_polling"]:
        problems.append("the waits did not notice that the event stream had ended")
    verify(problems, deploy.output)


# ------------------------------------------------------------------------------ 6: two deploys at the same time


def test_a_concurrent_deploy_exits_4_at_once_and_the_first_completes(stack, deploys):
    old = start_stack(stack, 2)

    with load_on(stack) as load:
        # 6 s after healthy, then the drain: the first runs on for longer than a refusal takes, even on a busy machine
        first = deploys(*DRAIN, *HEALTH_TIMEOUT, "--wait-after-healthy", "6", APP_VERSION="v2")
        first.reach("after healthy")
        during = [c.id for c in stack.containers()]
        second = stack.reroll_json("app", *DRAIN, extra_env={"APP_VERSION": "v3"}, timeout=60)
        waited = first.process.poll() is not None  # "at once": it did not wait for the first to end
        untouched = [c.id for c in stack.containers()] == during
        code = first.finish()
    report = load.report()

    print(f"[{stack.name}] second deploy -> exit {second.returncode} in {second.seconds:.2f}s; "
          f"first -> exit {code} in {first.seconds:.2f}s")
    problems = invariant_problems(stack, NEW, old, report, first.ended, replicas=2)
    problems += undrained(stack, first.since, first.ended)
    if second.returncode != 4 or waited:
        problems.append(f"second deploy: exit {second.returncode} after {second.seconds:.1f}s"
                        f"{', once the first had ended' if waited else ''}; expected 4 at once, the first running")
    if second.outcome != "locked" or not second.said("another deploy of this service is running", "error"):
        problems.append("the second deploy did not say why it stopped")
    if not untouched:
        problems.append("the refused deploy changed the service")
    if code != 0:
        problems.append(f"first deploy: exit {code}")
    verify(problems, first.output)


# ------------------------------------------------------------ 7: an interrupt while the new version starts slowly

STOP_GRACE = 10.0  # the example app sets no stop_grace_period: the engine's 10 s


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_during_a_slow_start_ends_within_the_floor_and_the_stop_grace(make_stack, signum):
    """The new version needs 8 s and has a 30 s start period: it is `starting`, and Docker cannot report it
    unhealthy for 30 s. Seen before: the roll-back ran the pre-stop command on it, then waited up to 60 s for an
    unhealthy that could not come. Now it gets the pre-stop command and the floor only."""
    stack = make_stack("tight")
    old = start_stack(stack, 1)
    name = signal.Signals(signum).name

    with load_on(stack) as load:
        deploy = Deploy(stack, *DRAIN, APP_VERSION="v2", APP_STARTUP_DELAY="8", APP_START_PERIOD="30s")
        try:
            deploy.reach("to be healthy")
            time.sleep(1.5)
            deploy.signal(signum)
            code = deploy.finish()
        finally:
            deploy.kill()
    report = load.report()

    bound = DRAIN_FLOOR + STOP_GRACE + 2
    print(f"[{stack.name}] {name} during a slow start -> exit {code} {deploy.after_signal():.2f}s after the signal "
          f"(bound {bound:g}s)")
    problems = invariant_problems(stack, OLD, old, report, deploy.ended)
    if code != 128 + signum:
        problems.append(f"exit {code}, expected {128 + signum}")
    if deploy.after_signal() > bound:
        problems.append(f"exited {deploy.after_signal():.1f}s after the signal, more than {bound:g}s")
    run = deploy.stream
    began = run.typed("phase", service="app", phase="roll back")
    since = run.events[run.events.index(began[-1]):] if began else []
    if run.result("app") != "interrupted (rolled back)" or not began:
        problems.append(f"no roll-back for {name} reported: app {run.result('app')}")
    if not run.said("never turned healthy", "info") or any(
            e["type"] == "log" and "to be unhealthy" in e["message"] for e in since):
        problems.append("the roll-back waited for an unhealthy that Docker cannot report")
    verify(problems, deploy.output)


# ------------------------------------------------------------------ 8: SIGKILL, the killed process left a zombie

NEGLECTFUL_PARENT = textwrap.dedent("""
    import subprocess, sys, time
    child = subprocess.Popen(sys.argv[1:])  # never waited for: once killed, it stays a zombie
    print(child.pid, flush=True)
    time.sleep(600)
""")


def process_state(pid):
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0]


def test_a_killed_deploy_left_as_an_unreaped_zombie_is_taken_over_at_once(stack, base_env):
    """As in a CI job's container without an init process: the killed deploy is never reaped. The lock's owner is
    a zombie, which is no deploy: the next run takes the lock over at once and finishes the job."""
    old = start_stack(stack, 1)
    plugin = os.path.join(base_env["DOCKER_CONFIG"], "cli-plugins", "docker-reroll")

    with load_on(stack) as load:
        parent = subprocess.Popen([sys.executable, "-c", NEGLECTFUL_PARENT, plugin, "app", *DRAIN,
                                   "--wait-after-healthy", "30"], cwd=stack.directory, text=True,
                                  env={**stack.env, **JSON_STREAM, "APP_VERSION": "v2"}, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, start_new_session=True)
        try:
            victim = int(parent.stdout.readline())
            read_until_said(parent, "waiting 30s after healthy", "info")
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while process_state(victim) != "Z":
                assert time.monotonic() < deadline, "the killed deploy did not become a zombie"
                time.sleep(0.05)
            rerun = stack.reroll_json("app", *DRAIN, extra_env={"APP_VERSION": "v3"})
            ended = time.time()
            still_zombie = process_state(victim) == "Z"
        finally:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()
    report = load.report()

    assert still_zombie, "the owner stayed an unreaped zombie throughout"
    problems = invariant_problems(stack, NEW, old, report, ended, replicas=1, version="v3")
    if rerun.returncode != 0 or rerun.outcome != "deployed":
        problems.append(f"re-run exit {rerun.returncode}, {rerun.outcome}")
    if not any("taking over the deploy lock" in m and f"process {victim} " in m for m in rerun.logs()):
        problems.append("the re-run did not take over the zombie's lock")
    verify(problems, rerun.run.stderr)


def test_the_recovery_run_retires_a_half_made_container_still_in_its_start_period_promptly(make_stack):
    """Killed while its new container was still starting (start period 60 s): the next run finishes the job and
    retires that container with the pre-stop command and the floor, not a wait for an unhealthy that cannot come."""
    stack = make_stack("tight")
    old = start_stack(stack, 1)

    with load_on(stack) as load:
        victim = Deploy(stack, *DRAIN, APP_VERSION="v2", APP_STARTUP_DELAY="30", APP_START_PERIOD="60s")
        try:
            victim.reach("to be healthy")
            os.kill(victim.plugin_pid, signal.SIGKILL)
            victim.finish()
        finally:
            victim.kill()
        half_made = [c for c in stack.containers() if c.id not in {o.id for o in old}]
        assert [c.health for c in half_made] == ["starting"]
        rerun = stack.reroll_json("app", *DRAIN, extra_env={"APP_VERSION": "v3"})
        ended = time.time()
    report = load.report()

    print(f"[{stack.name}] recovery run -> exit {rerun.returncode} in {rerun.seconds:.2f}s")
    problems = invariant_problems(stack, NEW, old + half_made, report, ended, replicas=1, version="v3")
    if rerun.returncode != 0 or rerun.outcome != "deployed":
        problems.append(f"re-run exit {rerun.returncode}, {rerun.outcome}")
    if rerun.seconds > 15:
        problems.append(f"the recovery took {rerun.seconds:.1f}s: it waited for the half-made container")
    if not rerun.said("never turned healthy"):
        problems.append("the half-made container was not recognised as never healthy")
    verify(problems, rerun.run.stderr)

"""Bounded child processes, with real processes (no daemon): limits, cancels, process groups and open pipes."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from docker_reroll.processes import OUTPUT_GRACE, CommandRunner, Session
from pids import group_left, group_members, pids_from, running

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def timed(argv, **kwargs):
    started = time.monotonic()
    result = CommandRunner().run(argv, check=False, **kwargs)
    return result, time.monotonic() - started


def test_output_and_exit_status_are_collected():
    result, _ = timed(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.returncode, result.stdout, result.stderr, result.ended) == (3, "out\n", "err\n", None)


def test_a_background_job_holding_the_output_open_does_not_hold_the_caller_and_is_ended(tmp_path):
    """The shell exits at once; `sleep` keeps its stdout. Seen before: the call returned only when sleep ended
    (here after 12 s; with `sleep 600 &` in a pre-stop command, never in practice)."""
    job = tmp_path / "job"
    result, seconds = timed(["sh", "-c", f"echo drained; sleep 12.34 & echo $! > {job}"], timeout=60)
    assert result.returncode == 0 and result.stdout == "drained\n" and result.ended is None
    assert OUTPUT_GRACE <= seconds < 2 * OUTPUT_GRACE + 1, seconds
    time.sleep(0.2)
    assert not running(*pids_from(job)), "what held the finished command's output was ended"


def test_a_background_job_that_let_go_of_the_output_is_left_running(tmp_path):
    job = tmp_path / "job"
    result, seconds = timed(["sh", "-c", f"sleep 12.35 >/dev/null 2>&1 & echo $! > {job}; echo started"],
                            timeout=60)
    assert result.stdout == "started\n" and seconds < OUTPUT_GRACE
    [pid] = pids_from(job)
    assert running(pid), "a job that does not hold our output is the user's business"
    os.kill(pid, signal.SIGTERM)


def test_a_command_past_its_limit_is_ended_with_its_whole_group(tmp_path):
    """A background job started by a script ignores SIGINT, and the shell may exit before it: the group goes."""
    group = tmp_path / "group"  # the shell leads the group: its pid is the group's id
    result, seconds = timed(["sh", "-c", f"echo $$ > {group}; sleep 600.5 & sleep 600.5; echo never"], timeout=1,
                            grace=1)
    assert result.ended == "timeout" and "gave up after 1s" in result.stderr
    assert result.returncode != 0 and "never" not in result.stdout
    assert seconds < 1 + 1 + 1.5, seconds
    time.sleep(0.2)
    assert group_members(*pids_from(group)) == [], "every process of the group is gone"


def test_a_command_that_ignores_the_polite_signal_is_killed_after_the_grace(tmp_path):
    started = time.monotonic()
    group = tmp_path / "group"
    result, seconds = timed(["sh", "-c", f"echo $$ > {group}; trap '' TERM INT; sleep 600.6"], timeout=0.5, grace=1)
    assert result.ended == "timeout" and result.returncode == -signal.SIGKILL
    assert 1.4 <= seconds < 3, seconds
    time.sleep(0.2)
    assert group_members(*pids_from(group)) == []
    assert time.monotonic() - started < 5


def test_cancel_ends_a_command_with_the_chosen_signal(tmp_path):
    # Cancelled once the command has set its trap (a signal that arrives before the shell runs is not its to trap).
    ready = tmp_path / "trapped"
    script = f"trap 'echo got INT; exit 7' INT; touch {ready}; while :; do sleep 0.05; done"
    result, seconds = timed(["sh", "-c", script], cancel=ready.exists, stop_signal=signal.SIGINT)
    assert result.ended == "cancelled" and result.returncode == 7 and "got INT" in result.stdout
    assert seconds < 1.5


def test_a_missing_program_is_a_docker_command_error():
    from docker_reroll.errors import DockerCommandError

    try:
        CommandRunner().run(["/nonexistent/program"])
    except DockerCommandError as error:
        assert error.returncode == 127
    else:
        raise AssertionError("no error")


STORM = textwrap.dedent("""
    import signal, sys, time
    sys.path.insert(0, sys.argv[1])
    from docker_reroll.processes import CommandRunner
    signal.signal(signal.SIGINT, lambda *_: None)
    print("ready", flush=True)
    runner, killed, spawned = CommandRunner(), 0, 0
    deadline = time.monotonic() + 30  # a count, not a time: a busy machine starts fewer children a second
    while spawned < 300 and time.monotonic() < deadline:
        if runner.run(["true"], check=False).returncode == -signal.SIGINT:
            killed += 1
        spawned += 1
    print(spawned, killed, flush=True)
""")


def test_a_ctrl_c_to_our_process_group_never_kills_a_child_that_is_starting():
    """Children run in sessions of their own; a group signal that lands while one is being started must not kill
    it (it did with vfork: about 2 in 100 children died under this storm)."""
    storm = subprocess.Popen([sys.executable, "-c", STORM, SRC], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    assert storm.stdout.readline() == "ready\n"
    while storm.poll() is None:
        try:
            os.killpg(storm.pid, signal.SIGINT)
        except ProcessLookupError:
            break
        time.sleep(0.001)
    spawned, killed = map(int, storm.stdout.read().split())
    assert spawned == 300 and killed == 0, (spawned, killed)


def test_output_lines_reach_a_callback_as_they_come():
    seen = []
    started = time.monotonic()
    result = CommandRunner().run(["sh", "-c", "echo one; echo two >&2; sleep 0.6; printf 'three'"],
                                 on_line=lambda line: seen.append((line, time.monotonic() - started)))
    assert [line for line, _ in seen] == ["one", "two", "three"] and result.stdout == "one\nthree"
    assert seen[0][1] < 0.5 and seen[2][1] >= 0.6, "the first lines came before the command ended"


# A session runs haproxy.py's loop as it runs in a proxy's container, with a stand-in for the runtime API client:
# it answers the line it reads, and exits with the status the line asks for.
STAND_IN_CLIENT = 'read -r words; echo "answer to: $words"; echo "port $1"; case $words in hang*) sleep 30;; esac; ' \
                  'exit "${words##* }"'


def session() -> Session:
    from docker_reroll.haproxy import API_SESSION, SESSION_END

    return Session(["sh", "-c", API_SESSION, STAND_IN_CLIENT, "61999", SESSION_END], SESSION_END)


def test_a_session_answers_line_after_line_in_one_process_with_each_answers_status():
    ours = session()
    assert ours.process is not None
    pid = ours.process.pid
    first = ours.ask("show stat 0", timeout=5)
    second = ours.ask("set server x 3", timeout=5)
    assert first is not None and first.returncode == 0 and first.stdout == "answer to: show stat 0\nport 61999\n\n"
    assert second is not None and second.returncode == 3 and "answer to: set server x 3" in second.stderr
    assert ours.process is not None and ours.process.pid == pid, "one process for both"
    ours.close()
    assert ours.process is None and not running(pid)


def test_a_session_that_does_not_answer_in_time_is_ended_and_says_none():
    ours = session()
    assert ours.process is not None
    group = ours.process.pid
    started = time.monotonic()
    assert ours.ask("hang 0", timeout=1) is None
    assert time.monotonic() - started < 1 + OUTPUT_GRACE + 2
    assert ours.process is None and not group_left(group), "the loop and the client it ran (sleep 30) are gone"
    assert ours.ask("show stat 0", timeout=1) is None, "an ended session answers nothing"


def test_a_session_whose_command_ended_says_none_at_once():
    ours = Session(["sh", "-c", "exit 0"], "end")
    started = time.monotonic()
    assert ours.ask("show stat", timeout=10) is None and time.monotonic() - started < 5
    assert Session(["/nonexistent/docker"], "end").ask("show stat", timeout=1) is None

"""An engine that stops answering mid-deploy is waited for, a bounded time, and the call made again; its silence
is never taken for the containers' state. With the docker CLI's recorded answers (FakeRunner)."""

import io
import threading
import time

import pytest

from docker_reroll.engine import Docker
from docker_reroll.errors import EngineUnreachable
from docker_reroll.interrupts import Interrupts
from docker_reroll.outage import EngineWait
from docker_reroll.processes import Result
from docker_reroll.progress import Progress
from docker_reroll.writers import PlainWriter
from fakeengine import FakeRunner

DOWN = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n"


def docker_with(runner, await_engine):
    docker = Docker("docker", [], [], {}, runner)
    docker.await_engine = await_engine
    docker.engine_seen = True  # it answered earlier in the run
    return docker


def test_a_call_that_finds_no_engine_waits_for_it_and_is_made_again():
    asked = []
    runner = FakeRunner(Result(1, "", DOWN), Result(0, "[]", ""))
    docker = docker_with(runner, lambda error: asked.append(error) or True)
    assert docker.run("ps", "-q").stdout == "[]"
    assert asked == [DOWN.strip()] and len(runner.calls) == 2


def test_an_engine_that_does_not_come_back_ends_the_call_with_its_own_error():
    docker = docker_with(FakeRunner(Result(1, "", DOWN)), lambda error: False)
    with pytest.raises(EngineUnreachable, match="Cannot connect to the Docker daemon"):
        docker.run("inspect", "x", check=False)
    other = docker_with(FakeRunner(Result(1, "", "Error: No such container: x")), lambda error: False)
    assert other.run("inspect", "x", check=False).returncode == 1, "other failures are the caller's to judge"


def test_the_wait_says_so_polls_until_the_engine_answers_and_is_bounded():
    answers = iter([False, False, False, True])
    out = io.StringIO()
    wait = EngineWait(lambda: next(answers), Progress(PlainWriter(out)), Interrupts(), seconds=5)
    started = time.monotonic()
    assert wait(DOWN.strip()) is True
    assert 0.9 < time.monotonic() - started < 3
    assert "the Docker engine does not answer (Cannot connect" in out.getvalue()
    assert "the Docker engine answers again after" in out.getvalue() and wait.outages == 1

    never = EngineWait(lambda: False, Progress(PlainWriter(io.StringIO())), Interrupts(), seconds=1)
    started = time.monotonic()
    assert never("down") is False and time.monotonic() - started < 2


def test_an_interrupt_ends_the_wait_for_the_engine():
    interrupts = Interrupts()
    wait = EngineWait(lambda: False, Progress(PlainWriter(io.StringIO())), interrupts, seconds=30)
    threading.Timer(0.3, interrupts.record, args=(2,)).start()
    started = time.monotonic()
    assert wait("down") is False and time.monotonic() - started < 2


def test_an_engine_that_never_answered_this_run_is_refused_at_once_not_waited_for():
    asked = []
    docker = Docker("docker", [], [], {}, FakeRunner(Result(1, "", DOWN)))
    docker.await_engine = lambda error: asked.append(error) or True
    with pytest.raises(EngineUnreachable):
        docker.run("info")
    assert asked == [], "a wrong --host or a stopped engine at the start is an error now, not a minute from now"

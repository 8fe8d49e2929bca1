"""ContainerWatch with a stand-in for Docker: events wake waits at once, inspect reconciles, polling takes over."""

import threading
import time

from docker_reroll.interrupts import Interrupts
from docker_reroll.model import Container, ContainerEvent
from docker_reroll.watch import ContainerWatch, all_healthy, all_unhealthy


def box(cid, health="starting", status="running"):
    return Container(id=cid, name=f"web-{cid}", status=status, health=health)


class FakeDocker:
    """Holds 'engine' state; events are pushed by the test; inspect returns the state."""

    def __init__(self, containers, stream=True):
        self.state = {c.id: c for c in containers}
        self.inspects = 0
        self.on_event = None
        self.stream = stream
        self.before_inspect_returns = None

    def events(self, project, service, on_event):
        self.on_event = on_event
        if not self.stream:
            on_event(None)
        return self

    def close(self):
        pass

    def inspect(self, ids):
        self.inspects += 1
        result = [self.state[i] for i in ids if i in self.state]
        if self.before_inspect_returns:
            self.before_inspect_returns()
            self.before_inspect_returns = None
        return result

    def push(self, cid, action, health=None):
        if health:
            self.state[cid] = Container(id=cid, name=f"web-{cid}", status="running", health=health)
        self.on_event(ContainerEvent(id=cid, action=action, health=health, received=time.monotonic(),
                                     engine_time=time.time()))


def test_a_health_event_ends_the_wait_within_milliseconds():
    docker = FakeDocker([box("a"), box("b")])
    with ContainerWatch(docker, "p", "web", Interrupts()) as watch:
        threading.Timer(0.2, docker.push, args=("a", "health_status", "healthy")).start()
        threading.Timer(0.4, docker.push, args=("b", "health_status", "healthy")).start()
        started = time.monotonic()
        outcome = watch.wait(["a", "b"], all_healthy, 10)
        elapsed = time.monotonic() - started
    assert outcome.done and 0.35 < elapsed < 1.0
    assert len(watch.stats.reaction_seconds) == 1 and watch.stats.reaction_seconds[0] < 0.05
    assert docker.inspects == 1  # the reconcile at the start; no polling while events flow


def test_an_event_that_arrives_while_inspect_runs_wins_over_the_older_inspect():
    docker = FakeDocker([box("a")])
    with ContainerWatch(docker, "p", "web", Interrupts()) as watch:
        watch.refresh(["a"])
        # The inspect reads 'starting', then the engine reports healthy before the inspect's answer is merged.
        docker.before_inspect_returns = lambda: docker.push("a", "health_status", "healthy")
        [state] = watch.refresh(["a"])
    assert state.health == "healthy"


def test_without_an_event_stream_waits_poll_with_inspect():
    docker = FakeDocker([box("a", health="healthy")], stream=False)
    with ContainerWatch(docker, "p", "web", Interrupts()) as watch:
        def turn_unhealthy():
            docker.state["a"] = box("a", health="unhealthy")

        threading.Timer(0.3, turn_unhealthy).start()
        outcome = watch.wait(["a"], all_unhealthy, 5)
    assert outcome.done and watch.stats.used_polling and docker.inspects >= 2


def test_waits_end_at_their_deadline_and_on_interrupts():
    docker = FakeDocker([box("a")])
    interrupts = Interrupts()
    with ContainerWatch(docker, "p", "web", interrupts) as watch:
        started = time.monotonic()
        assert watch.wait(["a"], all_healthy, 0.3).kind == "timeout"
        assert 0.3 <= time.monotonic() - started < 1.0
        threading.Timer(0.1, interrupts.record, args=(2,)).start()
        assert watch.wait(["a"], all_healthy, 10).kind == "interrupted"


def test_a_container_that_dies_fails_the_wait_at_once():
    docker = FakeDocker([box("a")])
    with ContainerWatch(docker, "p", "web", Interrupts()) as watch:
        threading.Timer(0.1, docker.push, args=("a", "die")).start()
        outcome = watch.wait(["a"], all_healthy, 10)
    assert outcome.kind == "failed" and "exited" in outcome.reason


def test_a_cli_cancel_and_the_signal_behind_it_are_one_interrupt():
    """Ctrl-C reaches the docker CLI (which closes our socket) and us; whichever is seen first, it counts once."""
    interrupts = Interrupts()
    interrupts.record_cli_cancel()
    interrupts.record(2)
    assert interrupts.count == 1 and interrupts.first_signal == 2
    interrupts.record_cli_cancel()  # the socket closes only once, but a cancel after a signal is the same interrupt
    assert interrupts.count == 1
    interrupts.record(2)  # a real second Ctrl-C
    assert interrupts.count == 2


def test_sleep_notices_an_interrupt_that_came_before_it_when_asked_to():
    interrupts = Interrupts()
    interrupts.record(15)
    started = time.monotonic()
    assert interrupts.sleep(5, interrupts_seen=0) is False
    assert interrupts.sleep(0.1) is True  # by default only new interrupts end a sleep
    assert time.monotonic() - started < 1


def test_a_broken_stream_is_subscribed_again_and_events_wake_waits_once_more():
    """The engine restarted: `docker events` ended; a later stream brings the events back."""
    docker = FakeDocker([box("a")], stream=False)
    subscriptions = []
    original = docker.events

    def events(project, service, on_event):
        subscriptions.append(on_event)
        docker.stream = len(subscriptions) > 1  # the first one breaks at once, the next ones live
        return original(project, service, on_event)

    docker.events = events
    with ContainerWatch(docker, "p", "web", Interrupts()) as watch:
        threading.Timer(2.6, docker.push, args=("a", "health_status", "healthy")).start()
        outcome = watch.wait(["a"], all_healthy, 10)
        subscriptions[0](ContainerEvent(id="a", action="health_status", health="unhealthy"))  # the old stream's
    assert outcome.done and len(subscriptions) == 2
    assert watch.current(["a"])[0].health == "healthy", "a replaced stream's late events are not taken"

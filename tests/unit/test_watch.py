"""ContainerWatch over the fake engine: events wake waits at once, inspect reconciles, polling takes over."""

import threading
import time
from typing import Callable, Optional

from docker_reroll.interrupts import Interrupts
from docker_reroll.model import ContainerEvent
from docker_reroll.watch import ContainerWatch, all_healthy, all_unhealthy
from fakeengine import FakeEngine


def engine_with(*healths):
    """The fake engine with one running container of `web` per health; their ids."""
    engine = FakeEngine()
    return engine, [engine.add("web", health=health) for health in healths]


def test_a_health_event_ends_the_wait_within_milliseconds():
    engine, (a, b) = engine_with("starting", "starting")
    with ContainerWatch(engine, "p", "web", Interrupts()) as watch:
        threading.Timer(0.2, engine.set_health, args=(a, "healthy")).start()
        threading.Timer(0.4, engine.set_health, args=(b, "healthy")).start()
        started = time.monotonic()
        outcome = watch.wait([a, b], all_healthy, 10)
        elapsed = time.monotonic() - started
    assert outcome.done and 0.35 < elapsed < 1.0
    assert len(watch.stats.reaction_seconds) == 1 and watch.stats.reaction_seconds[0] < 0.05
    assert engine.calls.count("inspect") == 1  # the reconcile at the start; no polling while events flow


def test_an_event_that_arrives_while_inspect_runs_wins_over_the_older_inspect():
    class SlowInspect(FakeEngine):
        """The engine reports healthy after reading 'starting' for an inspect, before the answer is merged."""

        def inspect(self, ids):
            found = super().inspect(ids)
            self.set_health(ids[0], "healthy")
            return found

    engine = SlowInspect()
    a = engine.add("web", health="starting")
    with ContainerWatch(engine, "p", "web", Interrupts()) as watch:
        [state] = watch.refresh([a])
    assert state.health == "healthy"


def test_without_an_event_stream_waits_poll_with_inspect():
    engine, [a] = engine_with("healthy")
    engine.events_down = True
    with ContainerWatch(engine, "p", "web", Interrupts()) as watch:
        threading.Timer(0.3, engine.set_health, args=(a, "unhealthy")).start()
        outcome = watch.wait([a], all_unhealthy, 5)
    assert outcome.done and watch.stats.used_polling and engine.calls.count("inspect") >= 2


def test_waits_end_at_their_deadline_and_on_interrupts():
    engine, [a] = engine_with("starting")
    interrupts = Interrupts()
    with ContainerWatch(engine, "p", "web", interrupts) as watch:
        started = time.monotonic()
        assert watch.wait([a], all_healthy, 0.3).how == "timeout"
        assert 0.3 <= time.monotonic() - started < 1.0
        threading.Timer(0.1, interrupts.record, args=(2,)).start()
        assert watch.wait([a], all_healthy, 10).how == "interrupted"


def test_a_container_that_dies_fails_the_wait_at_once():
    engine, [a, b] = engine_with("starting", None)
    with ContainerWatch(engine, "p", "web", Interrupts()) as watch:
        threading.Timer(0.1, engine.die, args=(a, 3)).start()
        outcome = watch.wait([a, b], all_healthy, 10)
    assert outcome.how == "failed" and outcome.reason == "p-web-1 exited with code 3"


def test_a_container_this_run_removed_stays_removed_when_its_die_event_comes_late():
    """Seen in CI: the JSON stream's last state of a retired container was 'exited', its destroy event not yet
    read when `docker rm` returned."""
    engine, [a] = engine_with("healthy")
    with ContainerWatch(engine, "p", "web", Interrupts()) as watch:
        watch.refresh([a])
        [gone] = watch.removed([a])
        assert gone.status == "removed"
        watch._on_event(ContainerEvent(a, "die", exit_code=0, received=time.monotonic()))
        assert [c.status for c in watch.current([a])] == ["removed"]


def test_events_of_an_engine_outage_are_older_than_the_inspect_made_again_after_it():
    """Seen against a restarted engine: the dies of its shutdown arrived while an inspect waited for it to come back,
    were taken as newer than that inspect's answer (the containers running again), and failed the deploy."""
    class ComesBack(FakeEngine):
        outage: Optional[Callable[[], None]] = None

        def inspect(self, ids):
            if self.outage is not None:
                self.outage()
            return super().inspect(ids)

    engine = ComesBack()
    a = engine.add("web", health="healthy")
    with ContainerWatch(engine, "p", "web", Interrupts()) as watch:
        watch.refresh([a])

        def outage():
            watch._on_event(ContainerEvent(a, "die", exit_code=0, received=time.monotonic()))  # the shutdown's
            time.sleep(0.01)
            engine.answered_since = time.monotonic()  # the engine answers again: the inspect is made once more

        engine.outage = outage
        [now] = watch.refresh([a])
    assert (now.status, now.health) == ("running", "healthy")


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
    engine, [a] = engine_with("starting")
    engine.events_down = True
    with ContainerWatch(engine, "p", "web", Interrupts()) as watch:
        engine.events_down = False  # the engine is back: the next subscription lives
        threading.Timer(2.6, engine.set_health, args=(a, "healthy")).start()
        outcome = watch.wait([a], all_healthy, 10)
        first = engine.subscriptions[0]
        first.on_event(ContainerEvent(id=a, action="health_status", health="unhealthy"))  # the old stream's, late
    assert outcome.done and len(engine.subscriptions) == 2 and not first.live
    assert watch.current([a])[0].health == "healthy", "a replaced stream's late events are not taken"

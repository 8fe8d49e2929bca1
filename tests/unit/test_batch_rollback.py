"""A rolling update in batches (--max-surge 1) whose later batch fails, through Deployment.run() over the fake
engine: what the failure becomes when that batch's own roll-back fails too, and what each failure action leaves."""

import pytest

from docker_reroll.errors import DeployFailed, Incomplete, StoppedBetweenBatches
from fakeengine import HEALTHY, NEVER_HEALTHY, FakeEngine

LOCK = "docker-reroll-lock.p.web"
JOURNAL = LOCK + ".journal"


def second_batch_fails(old=2):
    """`old` healthy containers of `web` (p-web-1...); the second new container is never healthy. The engine and
    the old ids."""
    engine = FakeEngine()
    ids = [engine.add("web") for _ in range(old)]
    engine.behaviours = [HEALTHY, NEVER_HEALTHY, HEALTHY]
    return engine, ids


def serving(engine):
    return [(c.name, c.labels["com.docker.compose.config-hash"], c.status) for c in engine.service("web")]


def test_a_later_batch_whose_roll_back_fails_is_half_way_not_an_ordinary_failure(deploy):
    engine, _ = second_batch_fails()
    engine.fail("rm", "p-web-4", "context deadline exceeded")
    done = deploy(engine, max_surge=1, failure_action="pause")
    assert isinstance(done.error, Incomplete)
    assert str(done.error) == ("the roll-back failed (could not remove p-web-4: Error response from daemon: context "
                               "deadline exceeded) after: not healthy after 0.5s; web runs old and new containers: "
                               "run `docker reroll web` again")
    assert serving(engine) == [("p-web-2", "old", "running"), ("p-web-3", "new", "running"),
                               ("p-web-4", "new", "exited")]
    assert not done.deployment.consistent
    assert engine.inspect([LOCK]) and JOURNAL in engine.volumes, "lock and journal stay for the next run"


def test_a_later_batch_rolled_back_cleanly_is_the_batchs_own_failure(deploy):
    """failure_action pause: the service stays at its replica count, and the journal records who serves now."""
    engine, old = second_batch_fails()
    done = deploy(engine, max_surge=1, failure_action="pause")
    assert isinstance(done.error, StoppedBetweenBatches)
    assert str(done.error) == ("batch 2 of 2 failed (not healthy after 0.5s); failure_action pause: stopped with 2 "
                               "container(s) of web serving, 1 of them on the old config; run `docker reroll web` "
                               "again to replace them all")
    assert serving(engine) == [("p-web-2", "old", "running"), ("p-web-3", "new", "running")]
    assert done.shown()["p-web-4"] == "removed" and done.deployment.consistent
    assert engine.inspect([LOCK]) == [], "the lock is released"
    journal = engine.volumes[JOURNAL]
    assert journal["io.docker-reroll.replicas"] == "2"
    assert journal["io.docker-reroll.containers"] == ",".join(c.id[:12] for c in engine.service("web"))


@pytest.mark.parametrize("settings", [{"failure_action": "continue"},
                                      {"failure_action": "pause", "max_failure_ratio": 0.34}])
def test_a_tolerated_failure_keeps_its_batchs_old_container_and_the_update_goes_on(deploy, settings):
    engine, old = second_batch_fails(old=3)
    done = deploy(engine, max_surge=1, **settings)
    assert "batch 2 of 3 failed (not healthy after 0.5s); tolerated: its 1 old container(s) stay, the update goes " \
           "on" in done.said("warn")
    assert isinstance(done.error, StoppedBetweenBatches)
    assert str(done.error).startswith("1 old container(s) kept in place of new ones that failed (tolerated by "
                                      "failure_action/max_failure_ratio): stopped with 3 container(s) of web serving, "
                                      "1 of them on the old config")
    assert serving(engine) == [("p-web-2", "old", "running"), ("p-web-4", "new", "running"),
                               ("p-web-5", "new", "running")], "batch 3 replaced p-web-3"
    assert done.deployment.report.kept_old == [old[1]] and not done.deployment.report.completed


def test_failure_action_rollback_across_batches_makes_the_retired_old_containers_again(deploy):
    engine, old = second_batch_fails()
    retired = engine.inspect_raw([old[0]])[0]
    done = deploy(engine, max_surge=1)  # failure_action rollback: the default
    assert isinstance(done.error, DeployFailed)
    assert str(done.error) == ("batch 2 of 2 failed (not healthy after 0.5s); failure_action rollback: every batch "
                               "went back to the old config")
    assert serving(engine) == [("p-web-2", "old", "running"), ("p-web-4", "old", "running")]
    clone = engine.inspect_raw([engine.service("web")[1].id])[0]
    assert clone["Config"]["Labels"] == {**retired["Config"]["Labels"], "com.docker.compose.container-number": "4"}
    assert clone["Config"]["Image"] == "app:v1" and engine.service("web")[1].health == "healthy"
    assert done.shown() == {"p-web-1": "removed", "p-web-2": "healthy", "p-web-3": "removed", "p-web-4": "healthy"}
    report = done.deployment.report
    assert (report.new, report.new_containers) == ([], []), "the summary's `new`: none of the new config serves"
    assert done.deployment.consistent and engine.inspect([LOCK]) == [] and engine.volumes == {}

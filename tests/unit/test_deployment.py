"""One service's deploy in one batch, through Deployment.run() over the fake engine: what it reports, says and
leaves on the engine, when it succeeds and when its new containers fail."""

import time

from docker_reroll.errors import DeployFailed
from fakeengine import EXITS, HEALTHY, NEVER_HEALTHY, FakeEngine

LOCK = "docker-reroll-lock.p.web"


def with_old(count):
    """The fake engine with `count` healthy containers of `web` on the old config; their ids."""
    engine = FakeEngine()
    return engine, [engine.add("web") for _ in range(count)]


def test_a_deploy_drains_and_replaces_the_old_containers_then_releases_lock_and_journal(deploy):
    engine, old = with_old(2)
    done = deploy(engine, pre_stop_exec="touch /.dead", pre_stop_wait_until_unhealthy=True, drain_time=0.1)
    assert done.error is None
    serving = engine.service("web")
    assert [(c.name, c.labels["com.docker.compose.config-hash"], c.health) for c in serving] == \
        [("p-web-3", "new", "healthy"), ("p-web-4", "new", "healthy")]
    report = done.deployment.report
    assert (report.old, report.new, report.completed) == (old, [c.id for c in serving], True)
    assert sorted(engine.runner.calls) == sorted(["docker", "exec", i, "touch", "/.dead"] for i in old)
    assert "p-web-1, p-web-2 unhealthy" in done.said("info"), "stopped once Docker called them unhealthy"
    assert done.shown() == {"p-web-1": "removed", "p-web-2": "removed", "p-web-3": "healthy", "p-web-4": "healthy"}
    [plan] = [e["services"][0] for e in done.events if e["type"] == "plan"]
    assert [c["name"] for c in plan["containers"]] == ["p-web-1", "p-web-2"]
    assert (plan["replicas"], plan["batches"]) == (2, [{"start": 2, "retire": 2}])
    assert "volume create" in engine.calls, "the journal was written before the first change"
    assert engine.inspect([LOCK]) == [] and engine.volumes == {}, "lock and journal released"


def test_a_failed_first_batch_is_rolled_back_and_the_old_containers_were_never_touched(deploy):
    engine, old = with_old(2)
    engine.behaviours = [HEALTHY, NEVER_HEALTHY]
    done = deploy(engine)
    assert isinstance(done.error, DeployFailed) and str(done.error) == "not healthy after 0.5s"
    assert [(c.id, c.status, c.health) for c in engine.service("web")] == [(i, "running", "healthy") for i in old]
    assert done.shown() == {"p-web-1": "healthy", "p-web-2": "healthy", "p-web-3": "removed", "p-web-4": "removed"}
    assert any(m.startswith("p-web-4 (") and m.endswith(") is starting") for m in done.said("error"))
    assert "roll back" in done.phases() and "pre-stop" not in done.phases()
    assert done.deployment.consistent and done.deployment.report.new == []
    assert engine.inspect([LOCK]) == [] and engine.volumes == {}, "lock and journal released"


def test_a_new_container_that_exits_fails_the_deploy_at_once_not_at_the_health_check_timeout(deploy):
    engine, old = with_old(1)
    engine.behaviours = [EXITS]
    started = time.monotonic()
    done = deploy(engine, healthcheck_timeout=30)
    assert str(done.error) == "p-web-2 exited with code 1" and time.monotonic() - started < 5
    assert [c.id for c in engine.service("web")] == old and done.shown()["p-web-2"] == "removed"

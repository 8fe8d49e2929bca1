"""The fake engine the unit tests share keeps to what it stands in for: every member of the `Engine` interface,
with Docker's own parameters, and the engine's own event rules."""

import inspect

from docker_reroll.engine import Docker, Engine
from fakeengine import FakeEngine


def parameters(function):
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_the_fake_has_every_member_of_the_interface_with_dockers_parameters():
    members = [name for name in vars(Engine) if not name.startswith("_")]
    assert "compose_up" in members and "environ" in members
    docker, fake = Docker("docker", [], [], {}), FakeEngine()
    for name in members:
        if isinstance(vars(Engine)[name], property):
            assert hasattr(docker, name) and hasattr(fake, name), name
        else:
            assert parameters(getattr(FakeEngine, name)) == parameters(getattr(Docker, name)) == \
                parameters(getattr(Engine, name)), name


def test_health_is_reported_only_when_it_changes_and_a_removal_kills_then_destroys():
    engine, seen = FakeEngine(), []
    container = engine.add("web", health="starting")
    engine.events("p", "web", seen.append)
    for health in ("healthy", "healthy", "unhealthy"):
        engine.set_health(container, health)
    engine.remove([container])
    engine.remove([container])  # already gone: no failure, no event
    assert [(e.action, e.health, e.exit_code) for e in seen] == [
        ("health_status", "healthy", None), ("health_status", "unhealthy", None), ("die", None, 137),
        ("destroy", None, None)]

"""What a release's summary says of the service in flight, per-service settings resolved before anything changes, and
a stack's service found by the stack's own label, without a daemon."""

import io
import signal

import pytest

from docker_reroll.engine import Docker
from docker_reroll.errors import DeployFailed, Interrupted, LockedError, RefusedError, StoppedBetweenBatches
from docker_reroll.interrupts import Interrupts
from docker_reroll.model import ProjectConfig, ServiceSpec
from docker_reroll.options import Options
from docker_reroll.processes import Result as ProcessResult
from docker_reroll.progress import Progress
from docker_reroll.release import ReleaseRun
from docker_reroll.summary import Outcomes
from docker_reroll.swarm_engine import SwarmEngine
from docker_reroll.vocabulary import Result
from docker_reroll.writers import PlainWriter
from fakeengine import FakeEngine, FakeRunner

PLANNED = ["a", "b", "c"]


def release_in_flight(flight_consistent=True, recreate=False):
    """a deployed, b in flight (a deployment, or compose's recreate), c not reached."""
    outcomes = Outcomes()
    outcomes.done("a", Result.DEPLOYED)
    if recreate:
        outcomes.start("b")
    else:
        outcomes.start("b", lambda: flight_consistent)
    return outcomes


@pytest.mark.parametrize("error, result", [
    (DeployFailed("never healthy"), "failed (rolled back)"),
    (Interrupted("Ctrl-C", signal.SIGINT), "interrupted (rolled back)"),
    (Interrupted("Ctrl-C between batches", signal.SIGINT, rolled_back=False), "interrupted"),
    (StoppedBetweenBatches("batch 2 failed: paused"), "failed"),
    (RefusedError("no such service"), "refused"),
    (LockedError("Swarm is updating it", "b"), "locked"),
])
def test_the_service_in_flight_is_said_rolled_back_only_when_it_was(error, result):
    outcomes = release_in_flight()
    outcomes.finish(error, PLANNED)
    assert [(o.service, o.result) for o in outcomes.items] == [("a", "deployed"), ("b", result),
                                                               ("c", "not started")]


def test_a_locked_service_is_said_locked_though_no_service_was_in_flight_yet():
    """Locks are taken for every service before the first one changes: the locked one is named, the rest not
    started."""
    outcomes = Outcomes()
    outcomes.finish(LockedError("another deploy of this service is running", "b"), PLANNED)
    assert [(o.service, o.result) for o in outcomes.items] == [("b", "locked"), ("a", "not started"),
                                                               ("c", "not started")]


def test_a_half_way_service_or_an_interrupted_recreate_is_not_said_rolled_back():
    half_way = release_in_flight(flight_consistent=False)
    half_way.finish(DeployFailed("the roll-back failed"), PLANNED)
    recreate = release_in_flight(recreate=True)
    recreate.finish(Interrupted("while compose recreated b", signal.SIGTERM, rolled_back=False), PLANNED)
    assert half_way.items[1].result == "failed" and recreate.items[1].result == "interrupted"


def test_a_bad_update_config_is_a_refusal_that_names_the_service_and_the_key():
    release = ReleaseRun(Options(), FakeEngine(), Progress(PlainWriter(io.StringIO())), Interrupts(),
                         "docker reroll web")
    spec = ServiceSpec(name="web", update_config={"parallelism": -1})
    project = ProjectConfig("p", {"web": spec})
    with pytest.raises(RefusedError, match=r"service 'web': deploy\.update_config\.parallelism"):
        release.options_for(project, "web")
    assert release.options_for(project, "other") is release.options  # not in the file: the command line's


def service_listing(namespaces):
    """The docker CLI's answers to `docker service ls` and `docker service inspect --format`, for services (name ->
    its stack's label)."""

    def answer(argv):
        if argv[1:3] == ["service", "ls"]:
            return ProcessResult(0, "\n".join(namespaces) + "\n", "")
        assert argv[1:4] == ["service", "inspect", "--format"], argv
        return ProcessResult(0, "".join(f"{name} {namespaces[name]}\n" for name in argv[5:]), "")

    return Docker("docker", [], [], {}, FakeRunner(answer=answer))


def test_a_stack_service_is_matched_by_its_stacks_label_not_by_the_end_of_its_name():
    engine = SwarmEngine(service_listing({"shop_web": "shop", "shop_admin_web": "shop", "blog_web": "blog"}))
    assert engine.stack_services("web") == ["blog_web", "shop_web"]  # shop_admin_web is shop's admin_web
    assert engine.stack_services("admin_web") == ["shop_admin_web"]
    assert engine.stack_services("api") == []

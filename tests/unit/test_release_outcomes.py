"""What a release's summary says of the service in flight, per-service settings resolved before anything changes, and
a stack's service found by the stack's own label, without a daemon."""

import io
import signal
import subprocess
from types import SimpleNamespace

import pytest

from docker_reroll.errors import DeployFailed, Interrupted, LockedError, RefusedError, StoppedBetweenBatches
from docker_reroll.interrupts import Interrupts
from docker_reroll.model import ServiceSpec
from docker_reroll.options import Options
from docker_reroll.progress import Progress
from docker_reroll.release import ReleaseRun
from docker_reroll.summary import Outcomes
from docker_reroll.swarm_engine import SwarmEngine
from docker_reroll.vocabulary import Result
from docker_reroll.writers import PlainWriter

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
    (LockedError("Swarm is updating it"), "locked"),
])
def test_the_service_in_flight_is_said_rolled_back_only_when_it_was(error, result):
    outcomes = release_in_flight()
    outcomes.finish(error, PLANNED)
    assert [(o.service, o.result) for o in outcomes.items] == [("a", "deployed"), ("b", result),
                                                               ("c", "not started")]


def test_a_half_way_service_or_an_interrupted_recreate_is_not_said_rolled_back():
    half_way = release_in_flight(flight_consistent=False)
    half_way.finish(DeployFailed("the roll-back failed"), PLANNED)
    recreate = release_in_flight(recreate=True)
    recreate.finish(Interrupted("while compose recreated b", signal.SIGTERM, rolled_back=False), PLANNED)
    assert half_way.items[1].result == "failed" and recreate.items[1].result == "interrupted"


def test_a_bad_update_config_is_a_refusal_that_names_the_service_and_the_key():
    release = ReleaseRun(Options(), None, Progress(PlainWriter(io.StringIO())), Interrupts(), "docker reroll web")
    spec = ServiceSpec(name="web", update_config={"parallelism": -1})
    project = SimpleNamespace(services={"web": spec})
    with pytest.raises(RefusedError, match=r"service 'web': deploy\.update_config\.parallelism"):
        release.options_for(project, "web")
    assert release.options_for(project, "other") is release.options  # not in the file: the command line's


class ServiceListing:
    """`docker service ls` and `docker service inspect --format` as the engine answers them."""

    def __init__(self, namespaces):
        self.namespaces = namespaces  # service name -> its stack's label

    def run(self, *args, **kwargs):
        if args[:2] == ("service", "ls"):
            out = "\n".join(self.namespaces)
        else:
            out = "\n".join(f"{name} {self.namespaces[name]}" for name in args[4:])
        return subprocess.CompletedProcess(args, 0, out + "\n", "")


def test_a_stack_service_is_matched_by_its_stacks_label_not_by_the_end_of_its_name():
    engine = SwarmEngine(ServiceListing({"shop_web": "shop", "shop_admin_web": "shop", "blog_web": "blog"}))
    assert engine.stack_services("web") == ["blog_web", "shop_web"]  # shop_admin_web is shop's admin_web
    assert engine.stack_services("admin_web") == ["shop_admin_web"]
    assert engine.stack_services("api") == []

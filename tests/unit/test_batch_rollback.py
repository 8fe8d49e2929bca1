"""What a batch's failure becomes when its own roll-back fails too, without a daemon: the deployment's steps are
replaced by stand-ins that fail the way the engine can."""

import io
from types import SimpleNamespace

import pytest

from docker_reroll.deploy import Deployment
from docker_reroll.errors import DeployFailed, DockerCommandError, Incomplete
from docker_reroll.interrupts import Interrupts
from docker_reroll.options import Options
from docker_reroll.planning import Batch
from docker_reroll.progress import Progress


def deployment(roll_back):
    made = Deployment(Options(), "web", None, "p", None, Progress(io.StringIO()), Interrupts(), None)
    made._scale_up = lambda plan, batch, keep, label: [SimpleNamespace(id="new2", name="p-web-4", short_id="new2")]
    made._wait_ready = lambda new, interrupts_seen=0: (_ for _ in ()).throw(DeployFailed("p-web-4 never healthy"))
    made._roll_back = roll_back
    return made


def test_a_later_batch_whose_roll_back_fails_is_half_way_not_an_ordinary_failure():
    def broken_roll_back(keep, paused, cause):
        raise DockerCommandError(["docker", "stop", "new2"], 1, "context deadline exceeded")

    old, first_new = SimpleNamespace(id="old2"), SimpleNamespace(id="new1")
    plan = SimpleNamespace(old=[SimpleNamespace(id="old1"), old])
    with pytest.raises(Incomplete, match=r"the roll-back failed \(.*context deadline exceeded.*\) after: "
                                         r"p-web-4 never healthy"):
        deployment(broken_roll_back)._roll_out(plan, Batch(1, 1), keep=[old, first_new], label="batch 2 of 2",
                                               paused=[])


def test_a_later_batch_rolled_back_cleanly_is_the_batchs_own_failure():
    rolled = []
    plan = SimpleNamespace(old=[SimpleNamespace(id="old1"), SimpleNamespace(id="old2")])
    with pytest.raises(DeployFailed, match="p-web-4 never healthy"):
        deployment(lambda keep, paused, cause: rolled.append(cause))._roll_out(
            plan, Batch(1, 1), keep=plan.old[1:], label="batch 2 of 2", paused=[])
    assert len(rolled) == 1

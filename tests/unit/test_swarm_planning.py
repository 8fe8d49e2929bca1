"""The Swarm update's arguments and the parsing of what Swarm reports, without a daemon."""

import json

from docker_reroll.options import Options
from docker_reroll.swarm import SwarmService, parse_tasks, plan_swarm_update

INSPECT = {
    "ID": "svc1", "Version": {"Index": 42},
    "Spec": {"Name": "shop_web", "Labels": {"com.docker.stack.namespace": "shop"},
             "Mode": {"Replicated": {"Replicas": 4}},
             "TaskTemplate": {"ContainerSpec": {"Image": "app:v1@sha256:abc", "Env": ["APP_VERSION=v1", "OLD=1"]}}},
    "UpdateStatus": {"State": "completed", "StartedAt": "2026-11-26T10:00:00Z", "Message": "update completed"},
}


def test_what_swarm_reports_about_a_service_and_its_tasks():
    service = SwarmService.from_inspect(INSPECT)
    assert (service.name, service.image, service.replicas, service.stack, service.version) == \
        ("shop_web", "app:v1", 4, "shop", 42)
    assert service.update_state == "completed" and service.env == ["APP_VERSION=v1", "OLD=1"]
    tasks = parse_tasks(json.dumps([{"ID": "t1", "Slot": 2, "DesiredState": "shutdown",
                                     "Spec": {"ContainerSpec": {"Image": "app:v2@sha256:def"}},
                                     "Status": {"State": "failed", "Err": "task: non-zero exit (1)",
                                                "ContainerStatus": {"ContainerID": "c1"}}}]))
    assert [(t.id, t.slot, t.image, t.desired, t.state, t.error, t.container_id) for t in tasks] == \
        [("t1", "2", "app:v2", "shutdown", "failed", "task: non-zero exit (1)", "c1")]


def test_the_update_is_start_first_rolled_back_on_failure_with_the_new_image_and_environment():
    options = Options()
    plan = plan_swarm_update(options, SwarmService.from_inspect(INSPECT), "app:v2",
                             {"APP_VERSION": "v2", "NEW": "x"})
    args = plan.args
    assert args[args.index("--update-order") + 1] == "start-first"
    assert args[args.index("--update-failure-action") + 1] == "rollback"
    assert args[args.index("--update-parallelism") + 1] == "0"  # all at once, as a compose deploy
    assert args[args.index("--image") + 1] == "app:v2"
    assert ["--env-add", "APP_VERSION=v2"] == args[args.index("APP_VERSION=v2") - 1:args.index("APP_VERSION=v2") + 1]
    assert "NEW=x" in args and args[args.index("--env-rm") + 1] == "OLD" and "--force" in args
    assert plan.deadline == 60 + 0 + 5  # one batch: the health-check timeout, Swarm's default monitor


def test_max_surge_and_update_config_map_to_swarms_batches():
    options = Options()
    options.set("max_surge", 1, "command line")
    options.set("update_delay", 2.0, "deploy.update_config.delay")
    options.set("failure_action", "pause", "deploy.update_config.failure_action")
    plan = plan_swarm_update(options, SwarmService.from_inspect(INSPECT), None, None)
    args = plan.args
    assert args[args.index("--update-parallelism") + 1] == "1" and args[args.index("--update-delay") + 1] == "2s"
    assert args[args.index("--update-failure-action") + 1] == "pause"
    assert "--image" not in args and "--env-add" not in args and plan.changes == [
        "the same config (tasks replaced: --force)"]
    assert plan.deadline == 4 * (60 + 2 + 5)

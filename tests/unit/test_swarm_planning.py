"""The Swarm update's arguments, the settings that apply, what Swarm reports and how a run ends, without a daemon."""

import copy
import io
import json

import pytest

from docker_reroll import swarm
from docker_reroll.cli import parse_command_line
from docker_reroll.errors import DeployFailed, RefusedError, UsageError
from docker_reroll.interrupts import Interrupts
from docker_reroll.lock import EngineLock
from docker_reroll.model import SwarmService, UpdateConfig, parse_tasks, without_resolved_digest
from docker_reroll.options import FROM_COMMAND_LINE, Options
from docker_reroll.progress import Progress
from docker_reroll.summary import Outcomes, ServiceOutcome, outcome_word, summarize
from docker_reroll.swarm import SwarmDeployment
from docker_reroll.swarm_planning import check_swarm_options, plan_swarm_update, refusal_for
from docker_reroll.writers import JsonWriter
from fakeengine import FakeEngine

SECOND = 1_000_000_000
INSPECT = {
    "ID": "svc1", "Version": {"Index": 42},
    "Spec": {"Name": "shop_web", "Labels": {"com.docker.stack.namespace": "shop"},
             "Mode": {"Replicated": {"Replicas": 4}},
             "TaskTemplate": {"ContainerSpec": {"Image": "app:v1@sha256:abc", "Env": ["APP_VERSION=v1", "OLD=1"],
                                                "StopGracePeriod": 20 * SECOND}},
             # a stack deployed with `parallelism: 1, monitor: 60s, failure_action: pause` (order: Swarm's default)
             "UpdateConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 60 * SECOND,
                              "MaxFailureRatio": 0, "Order": "stop-first"}},
    "UpdateStatus": {"State": "completed", "StartedAt": "2026-11-26T10:00:00Z", "Message": "update completed"},
}


def service(**spec_changes):
    item = copy.deepcopy(INSPECT)
    item["Spec"].update(spec_changes)
    return SwarmService.from_inspect(item)


def value_of(args, flag):
    return args[args.index(flag) + 1]


def test_what_swarm_reports_about_a_service_and_its_tasks():
    current = service()
    assert (current.name, current.image, current.replicas, current.stack, current.version) == \
        ("shop_web", "app:v1@sha256:abc", 4, "shop", 42)
    assert current.update_state == "completed" and current.env == ["APP_VERSION=v1", "OLD=1"]
    assert (current.update_config.parallelism, current.update_config.monitor, current.update_config.failure_action,
            current.update_config.order, current.stop_grace) == (1, 60.0, "pause", "stop-first", 20.0)
    assert service(Mode={"Global": {}}).replicas is None
    assert service(UpdateConfig=None).update_config == UpdateConfig()  # Swarm's defaults
    tasks = parse_tasks(json.dumps([{"ID": "t1", "Slot": 2, "DesiredState": "shutdown",
                                     "Spec": {"ContainerSpec": {"Image": "app:v2@sha256:def"}},
                                     "Status": {"State": "failed", "Err": "task: non-zero exit (1)",
                                                "ContainerStatus": {"ContainerID": "c1"}}}]))
    assert [(t.id, t.slot, t.image, t.reference, t.desired, t.state, t.error, t.container_id) for t in tasks] == \
        [("t1", "2", "app:v2", "app:v2@sha256:def", "shutdown", "failed", "task: non-zero exit (1)", "c1")]


def test_without_settings_of_its_own_the_update_sends_none_and_keeps_the_services():
    plan = plan_swarm_update(Options(), service(), None, None)
    assert not [a for a in plan.args if a.startswith(("--update-", "--rollback-"))], plan.args
    assert ("on failure", "pause", "the service's own") in plan.settings
    assert ("monitor", "60s", "the service's own") in plan.settings and ("parallelism", "1", "the service's own") \
        in plan.settings
    # four batches of one, each: the old task's 20 s grace first, the health-check timeout; then Swarm's 60 s monitor
    assert plan.deadline == 4 * (20 + 60) + 60
    assert any("stop-first" in w and "start-first" in w for w in plan.warnings)


def test_what_the_user_set_is_sent_and_counts_for_the_deadline():
    options = Options()
    options.set("max_surge", 2, FROM_COMMAND_LINE)
    options = options.for_service("web", {"delay": "2s", "order": "start-first", "failure_action": "rollback"}, {})
    plan = plan_swarm_update(options, service(), None, None)
    args = plan.args
    assert value_of(args, "--update-parallelism") == "2" and value_of(args, "--update-delay") == "2s"
    assert value_of(args, "--update-order") == "start-first"
    assert value_of(args, "--update-failure-action") == "rollback"
    assert "--update-monitor" not in args and "--update-max-failure-ratio" not in args
    assert ("order", "start-first", "deploy.update_config.order") in plan.settings
    assert plan.deadline == 2 * (60 + 2) + 60 and not plan.warnings  # start-first: no stop before each batch


def test_the_monitor_is_the_command_lines_then_the_files_then_the_label():
    file_and_label = Options().for_service("web", {"monitor": "30s"}, {"docker-reroll.wait-after-healthy": "7"})
    label_only = Options().for_service("web", {}, {"docker-reroll.wait-after-healthy": "7"})
    command_line = Options()
    command_line.set("wait_after_healthy", 3.0, FROM_COMMAND_LINE)
    command_line = command_line.for_service("web", {"monitor": "30s"}, {})
    said = [value_of(plan_swarm_update(o, service(), None, None).args, "--update-monitor")
            for o in (file_and_label, label_only, command_line)]
    assert said == ["30s", "7s", "3s"]


def test_the_tag_is_resolved_again_unless_the_image_is_pinned_by_digest_alone():
    plan = plan_swarm_update(Options(), service(), None, None)
    assert value_of(plan.args, "--image") == "app:v1" and "--no-resolve-image" not in plan.args
    assert plan.changes == ["image app:v1 resolved again on its registry (it runs sha256:abc)"]
    assert "--force" in plan.args
    new = plan_swarm_update(Options(), service(), "app:v2", None)
    assert value_of(new.args, "--image") == "app:v2" and new.changes == ["image app:v1 -> app:v2"]
    assert without_resolved_digest("127.0.0.1:5000/app:latest@sha256:abc") == "127.0.0.1:5000/app:latest"
    assert without_resolved_digest("127.0.0.1:5000/app@sha256:abc") == "127.0.0.1:5000/app@sha256:abc"
    assert without_resolved_digest("app:v1") == "app:v1"


def test_environment_values_pass_through_the_clis_environment_and_are_never_said():
    plan = plan_swarm_update(Options(), service(), None,
                             {"APP_VERSION": "v1", "DB_PASSWORD": "hunter2", "DOCKER_TOKEN": "tok3n"})
    words = " ".join(plan.args + plan.shown_args + plan.changes)
    assert "hunter2" not in words and plan.env == {"DB_PASSWORD": "hunter2"}
    assert ["--env-add", "DB_PASSWORD"] == plan.args[plan.args.index("DB_PASSWORD") - 1:][:2]
    assert plan.changes[-3:] == ["DB_PASSWORD added", "DOCKER_TOKEN added", "OLD removed"]
    # a variable the docker CLI reads itself goes on its command line, and is still never shown
    assert "DOCKER_TOKEN=tok3n" in plan.args and "tok3n" not in " ".join(plan.shown_args + plan.changes)
    changed = plan_swarm_update(Options(), service(), None, {"APP_VERSION": "v2", "OLD": "1"})
    assert changed.changes[-1] == "APP_VERSION changed" and changed.env == {"APP_VERSION": "v2"}


def test_scale_is_the_replica_count_of_the_update_and_its_deadline():
    options = Options()
    options.scale["web"] = 6
    plan = plan_swarm_update(options, service(), None, None, 6)
    assert value_of(plan.args, "--replicas") == "6" and "replicas 4 -> 6" in plan.changes
    assert plan.deadline == 6 * (60 + 20) + 60
    assert refusal_for("shop_web", service(Mode={"Global": {}}), 6).startswith("--scale: shop_web is a global")


@pytest.mark.parametrize("flag, name, value", [
    ("--drain-time", "drain_time", 2.0), ("--wait", "wait", 5.0),
    ("--wait-after-unhealthy", "wait_after_unhealthy", 1.0),
    ("--pre-stop-cmd", "pre_stop_cmd", "true"), ("--pre-stop-exec", "pre_stop_exec", "touch /.dead"),
    ("--pre-stop-wait-until-unhealthy", "pre_stop_wait_until_unhealthy", True),
])
def test_every_option_a_swarm_service_cannot_take_is_refused_by_name(flag, name, value):
    options = Options()
    options.set(name, value, FROM_COMMAND_LINE)
    with pytest.raises(RefusedError, match=f"{flag} \\(command line\\)"):
        check_swarm_options("web", options)
    check_swarm_options("web", Options())  # none given: nothing to refuse


def test_labels_of_the_compose_file_are_refused_as_the_command_line_is():
    options = Options().for_service("web", {}, {"docker-reroll.drain-time": "3", "docker-reroll.pre-stop-exec": "x",
                                                "docker-reroll.healthcheck-timeout": "30"})
    with pytest.raises(RefusedError) as refused:
        check_swarm_options("web", options)
    message = str(refused.value)
    assert "--pre-stop-exec (label docker-reroll.pre-stop-exec)" in message
    assert "--drain-time (label docker-reroll.drain-time)" in message and "healthcheck" not in message.split(":")[1]
    assert "stop_grace_period" in message and "\n" not in message
    with pytest.raises(UsageError):  # a bad label value is still a usage error, as for compose
        Options().for_service("web", {}, {"docker-reroll.drain-time": "soon"})


class FakeSwarm:
    """SwarmEngine's answers (the Swarm calls are SwarmEngine's own, over `docker service`, not the Engine's): a
    service whose update Swarm takes through the given UpdateStatus states, one per look (the last one stays);
    `docker service rollback` starts a roll-back that never ends."""

    def __init__(self, states, message="update paused due to failure or early termination of task x"):
        self.states = list(states)
        self.message = message
        self.updates = []
        self.rollbacks = 0

    def inspect(self, name):
        item = copy.deepcopy(INSPECT)
        item["Spec"]["UpdateConfig"].update(Monitor=SECOND // 1000, Order="start-first")
        if self.updates:
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            item["Version"]["Index"] = 43
            item["UpdateStatus"] = {"State": state, "StartedAt": "2026-11-26T11:00:00Z", "Message": self.message}
        return SwarmService.from_inspect(item)

    def tasks(self, name):
        return []

    def update(self, name, args, env):
        self.updates.append((args, env))
        return []

    def rollback(self, name):
        self.rollbacks += 1
        self.states = ["rollback_started"]
        return ""


def deploy(engine, monkeypatch, healthcheck_timeout=30.0, rollback_extra=0.2):
    monkeypatch.setattr(swarm, "FOLLOW_SECONDS", 0.01)
    monkeypatch.setattr(swarm, "ROLLBACK_EXTRA_SECONDS", rollback_extra)
    options = Options()
    options.healthcheck_timeout = healthcheck_timeout
    stream = io.StringIO()
    progress = Progress(JsonWriter(stream))
    lock = EngineLock(FakeEngine(), "shop", "web", progress, "docker reroll --stack shop web")
    lock.acquire(0, Interrupts())
    deployment = SwarmDeployment(options, "shop_web", "web", engine, progress, Interrupts(), lock, (None, None))
    with pytest.raises(DeployFailed) as failed:
        deployment.run(deployment.check())
    return failed.value, [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize("states, ending", [
    (["updating", "paused"], "paused"),
    (["updating", "rollback_started", "rollback_paused"], "rollback paused"),
])
def test_a_pause_is_reported_as_swarm_reports_it_never_as_rolled_back(states, ending, monkeypatch):
    error, events = deploy(FakeSwarm(states), monkeypatch)
    assert not error.rolled_back and error.service_state == ending
    assert ("paused the roll-back" if "rollback" in ending else "paused the update") in str(error)
    assert outcome_word(1, [ServiceOutcome("web", f"failed ({ending})")], False) == ending


def test_a_deadline_that_passes_while_swarm_rolls_back_says_so(monkeypatch):
    engine = FakeSwarm(["updating"], message="rollback started")
    error, events = deploy(engine, monkeypatch, healthcheck_timeout=0)
    assert not error.rolled_back and error.service_state == "rollback in progress"
    assert "stopped following shop_web while Swarm rolls it back" in str(error) and engine.rollbacks == 1
    assert any(e["type"] == "log" and "asking Swarm to roll shop_web back" in e["message"] for e in events)


def test_a_roll_back_swarm_started_itself_is_waited_for_not_asked_again(monkeypatch):
    engine = FakeSwarm(["updating"] + ["rollback_started"] * 10 + ["rollback_completed"],
                       message="rollback completed")
    error, events = deploy(engine, monkeypatch, healthcheck_timeout=0, rollback_extra=10)
    assert error.rolled_back and error.service_state == "" and engine.rollbacks == 0
    assert str(error).startswith("not complete in time: Swarm rolled shop_web back")


def test_stack_empty_names_the_compose_project_over_the_environment():
    options = parse_command_line(["--stack", "", "web"], plugin_mode=False, environ={"DOCKER_REROLL_STACK": "shop"})
    assert options.stack == "" and options.source("stack") == FROM_COMMAND_LINE
    assert parse_command_line(["web"], plugin_mode=False, environ={"DOCKER_REROLL_STACK": "shop"}).stack == "shop"


@pytest.mark.parametrize("ending", ["paused", "rollback paused", "rollback in progress"])
def test_the_summary_says_what_swarm_left_the_service_in(ending):
    outcomes = Outcomes()
    outcomes.start("web", lambda: True)
    failed = DeployFailed("Swarm said so")
    failed.rolled_back, failed.service_state = False, ending
    outcomes.finish(failed, ["web"])
    line, outcome, services = summarize(1, 3.0, outcomes.items, False, lambda service: {})
    assert line == f"summary: web failed ({ending}); exit 1 after 3.0s" and outcome == ending

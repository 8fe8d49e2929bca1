"""Releases under load, through HAProxy: several services in one run, the whole project (--all), rolling batches
(--max-surge, deploy.update_config) with their failure action, and a new replica count (--scale)."""

import contextlib
import re
import time

from dockerfixtures import (
    DRAIN,
    JSON_STREAM,
    LOAD_RATE,
    docker,
    finish_json,
    load_on,
    lock_and_journal,
    project_events,
    read_until,
    start_reroll,
    start_stack,
)

PATHS = {"app": "/app/", "worker": "/worker/", "api": "/api/"}


@contextlib.contextmanager
def load_on_every_service(stack):
    """4 clients per service path (app, worker, api), a third of the usual load each."""
    with contextlib.ExitStack() as loads:
        yield {service: loads.enter_context(load_on(stack, path=path, clients=4, rate=LOAD_RATE / 3))
               for service, path in PATHS.items()}


def ids(stack, service):
    return sorted(c.id for c in stack.containers(service))


def versions(stack, service):
    return {stack.env_of(c)["APP_VERSION"] for c in stack.containers(service)}


def assert_zero_failed(loads):
    for service, load in loads.items():
        report = load.report()
        assert report.total > 100 and report.failed == 0, f"{service}: {report.summary()}"


# ---------------------------------------------------------------------------------------------- several services


def test_three_services_in_one_run_and_a_broken_second_stops_the_release(release_stack):
    stack = release_stack
    start_stack(stack, 1)
    before = {service: ids(stack, service) for service in PATHS}

    with load_on_every_service(stack) as loads:
        run = stack.reroll_json("app", "worker", "api", *DRAIN, "--healthcheck-timeout", "6", extra_env={
            "APP_VERSION": "v2", "WORKER_VERSION": "v2", "WORKER_BROKEN": "1", "API_VERSION": "v2"})

    assert run.returncode == 1 and run.outcome == "rolled back", run
    assert [(s["service"], s["result"]) for s in run.summary["services"]] == [
        ("app", "deployed"), ("worker", "failed (rolled back)"), ("api", "not started")]
    assert "api" not in {e["service"] for e in run.typed("phase")}, "api never began"
    assert ids(stack, "app") != before["app"] and versions(stack, "app") == {"v2"}, "the first stays new"
    assert ids(stack, "worker") == before["worker"] and versions(stack, "worker") == {"v1"}, "rolled back"
    assert ids(stack, "api") == before["api"], "the third untouched"
    assert_zero_failed(loads)


def test_a_bad_label_on_a_later_service_refuses_the_release_before_the_first_changes(release_stack):
    stack = release_stack
    start_stack(stack, 1)
    before = {service: ids(stack, service) for service in PATHS}

    run = stack.reroll_json("app", "worker", extra_env={"APP_VERSION": "v2", "WORKER_WAIT": "soon"})

    assert run.returncode == 2 and run.outcome == "usage error" and run.summary["exit_code"] == 2, run
    assert run.said("invalid value 'soon' for label docker-reroll.wait of service 'worker'", "error")
    assert {service: ids(stack, service) for service in PATHS} == before, "nothing changed"
    assert run.phases() == ["start"] and run.typed("container") == [], "no service began"


def test_a_journal_left_for_a_later_service_survives_a_release_that_stops_before_it(release_stack):
    """api's journal (an earlier deploy of it was killed) is the next `docker reroll api`'s only record of its
    replica count: a release that fails on worker and never reaches api must leave it."""
    stack = release_stack
    start_stack(stack, 1)
    [api] = stack.containers("api")
    journal = f"docker-reroll-lock.{stack.name}.api.journal"
    docker("volume", "create", "--label", "io.docker-reroll.replicas=1", "--label",
           f"io.docker-reroll.containers={api.id[:12]}", "--label", f"io.docker-reroll.since={time.time():.3f}",
           journal)

    run = stack.reroll_json("worker", "api", *DRAIN, "--healthcheck-timeout", "5",
                            extra_env={"WORKER_VERSION": "v2", "WORKER_BROKEN": "1", "API_VERSION": "v2"})

    assert run.returncode == 1 and run.outcome == "rolled back", run
    assert [(s["service"], s["result"]) for s in run.summary["services"]] == [
        ("worker", "failed (rolled back)"), ("api", "not started")]
    assert f"docker-reroll-lock.{stack.name}.api.journal" in lock_and_journal(stack), "the journal stays"
    assert f"docker-reroll-lock.{stack.name}.api" not in lock_and_journal(stack), "the lock does not"
    assert [c.id for c in stack.containers("api")] == [api.id]


# ---------------------------------------------------------------------------------------------- the whole project


def plan_lines(run):
    """Where the release's plan is in the stream, and its rows: (service, action)."""
    start = run.events.index(next(e for e in run.typed("log") if e["message"] == "plan:"))
    plan = []
    for event in run.events[start + 1:]:
        found = re.match(r"^  (\S+) +(roll|recreate|skip) +", event.get("message", ""))
        if event["type"] != "log" or not found:
            break
        plan.append((found.group(1), found.group(2)))
    return start, plan


def test_all_prints_the_plan_first_and_does_what_it_says(release_stack):
    """A proxy on a fixed port, a database marked recreate, an unchanged service, and two app services that
    change: the apps roll with zero failed requests, the database is recreated by compose, the rest untouched."""
    stack = release_stack
    start_stack(stack, 1)
    before = {service: ids(stack, service) for service in ("db", "docs", "worker", "proxy", "app", "api")}

    with load_on_every_service(stack) as loads:
        run = stack.reroll_json("--all", *DRAIN, extra_env={"APP_VERSION": "v2", "API_VERSION": "v2",
                                                            "DB_SETTING": "2"})

    assert run.returncode == 0 and run.outcome == "deployed", run
    start, plan = plan_lines(run)
    assert plan == [("db", "recreate"), ("api", "roll"), ("app", "roll"), ("docs", "skip"), ("worker", "skip"),
                    ("proxy", "skip")], "dependency order: db before api before app; proxy last"
    first_action = min(i for i, e in enumerate(run.events) if e["type"] == "phase" and e["service"] is not None)
    assert start < first_action, "the plan comes before anything changes"
    assert [(e["service"], e["phase"]) for e in run.typed("phase") if e["phase"] in ("recreate", "prepare")] == [
        ("db", "recreate"), ("api", "prepare"), ("app", "prepare")]
    assert [(s["service"], s["result"]) for s in run.summary["services"]] == [
        ("db", "recreated"), ("api", "deployed"), ("app", "deployed"), ("docs", "skipped (up to date)"),
        ("worker", "skipped (up to date)"), ("proxy", "skipped (up to date)")]
    for unchanged in ("docs", "worker", "proxy"):
        assert ids(stack, unchanged) == before[unchanged], f"{unchanged} was touched"
    assert ids(stack, "db") != before["db"]
    assert [stack.env_of(c)["DB_SETTING"] for c in stack.containers("db")] == ["2"]
    for rolled in ("app", "api"):
        assert ids(stack, rolled) != before[rolled] and versions(stack, rolled) == {"v2"}
    assert_zero_failed(loads)


# ----------------------------------------------------------------------------------------------------- batches


def fewest_healthy(events, initial):
    """The fewest app containers healthy at any moment, from the engine's health and die events, and the event that
    brought the count there (the engine's record is long: the assertion says where to look)."""
    healthy = set(initial)
    fewest, where = len(healthy), "at the start"
    for moment, container, action in events:
        if action == "health_status: healthy":
            healthy.add(container)
        elif action in ("health_status: unhealthy", "die"):
            healthy.discard(container)
        if not action.startswith("exec_") or "touch" in action:  # the checks' own execs are noise here
            print(f"{moment:.3f} {container[:12]} {action:24} healthy: {len(healthy)}")
        if len(healthy) < fewest:
            fewest, where = len(healthy), f"after {container[:12]} {action} at {moment:.3f}"
    return fewest, where


def deploy_batches(stack, *args, **env):
    old = start_stack(stack, 4)
    since = time.time()
    with load_on(stack) as load:
        run = stack.reroll_json("app", *DRAIN, *args, extra_env={"APP_VERSION": "v2", **env})
    events = project_events(stack, since, time.time() + 1)
    return old, run, load.report(), fewest_healthy(events, [c.id for c in old])


def test_four_replicas_one_at_a_time_never_fewer_than_four_healthy(make_stack):
    stack = make_stack()
    old, run, report, (fewest, where) = deploy_batches(stack, "--max-surge", "1")

    assert run.returncode == 0 and run.outcome == "deployed", run
    assert run.plan("app")["batches"] == [{"start": 1, "retire": 1}] * 4
    assert run.setting("app", "--max-surge") == ("1", "command line")
    assert run.phases("app").count("scale up") == 4 and len(run.containers(role="new", state="healthy")) == 4
    assert fewest >= 4, f"only {fewest} healthy, {where}"
    assert report.failed == 0, report.summary()
    new = stack.containers()
    assert len(new) == 4 and not {c.id for c in new} & {c.id for c in old} and versions(stack, "app") == {"v2"}


def test_update_config_sets_the_batches_and_the_delay(make_stack):
    stack = make_stack("batches")
    old, run, report, (fewest, where) = deploy_batches(stack)

    assert run.returncode == 0 and run.outcome == "deployed", run
    plan = run.plan("app")
    assert plan["batches"] == [{"start": 2, "retire": 2}] * 2 and plan["failure_action"] == "rollback"
    assert run.setting("app", "--max-surge") == ("2", "deploy.update_config.parallelism")
    assert run.phases("app").count("scale up") == 2 and run.said("waiting 2s before batch 2 of 2", "info")
    assert fewest >= 4, f"only {fewest} healthy, {where}"
    assert report.failed == 0, report.summary()
    assert len(stack.containers()) == 4 and versions(stack, "app") == {"v2"}


def test_a_failure_in_the_second_batch_rolls_every_batch_back_with_zero_failed_requests(make_stack, tmp_path):
    """failure_action: rollback. Batch 1 replaces two old containers; batch 2's new ones never get healthy (the
    switch file is made between the batches). Every batch goes back: the two retired old containers are made
    again from what the engine knew of them, ready before the first batch's new ones are drained."""
    stack = make_stack("batches")
    stack.env["SWITCH_DIR"] = str(tmp_path)
    old = start_stack(stack, 4)

    with load_on(stack) as load:
        deploy = start_reroll(stack, "app", *DRAIN, "--healthcheck-timeout", "6",
                              extra_env={**JSON_STREAM, "APP_VERSION": "v2", "APP_FAIL_FILE": "/switch/fail"})
        seen = read_until(deploy, "waiting 2s before batch 2 of 2")
        (tmp_path / "fail").touch()
        run = finish_json(deploy, seen)
    report = load.report()

    assert run.returncode == 1 and run.outcome == "rolled back", run
    assert run.phases("app").count("scale up") == 2 and "roll back" in run.phases("app")
    assert run.said("failure_action rollback: every batch went back to the old config", "error")
    assert run.said("made 2 container(s) on the old config again", "info")
    final = stack.containers()
    assert len(final) == 4 and all(c.running and c.health == "healthy" for c in final)
    assert versions(stack, "app") == {"v1"}, "four containers of the old config"
    assert len({c.id for c in final} & {c.id for c in old}) == 2, "two old ones never left, two were made again"
    assert report.failed == 0, report.summary()


# ---------------------------------------------------------------------------------------------- a new count


def test_scale_to_three_from_one_and_from_five(make_stack):
    for start in (1, 5):
        stack = make_stack()
        old = start_stack(stack, start)
        with load_on(stack) as load:
            run = stack.reroll_json("app", *DRAIN, "--scale", "app=3", extra_env={"APP_VERSION": "v2"})
        assert run.returncode == 0 and run.outcome == "deployed", run
        plan = run.plan("app")
        assert len(plan["containers"]) == start and plan["replicas"] == 3, f"from {start} to 3 containers"
        assert len(run.summary["services"][0]["new"]) == 3
        new = stack.containers()
        assert len(new) == 3 and not {c.id for c in new} & {c.id for c in old}
        assert versions(stack, "app") == {"v2"} and all(c.health == "healthy" for c in new)
        assert load.report().failed == 0, load.report().summary()
        stack.cleanup()


def test_the_compose_files_replica_count_is_the_target_when_it_differs(make_stack, tmp_path):
    stack = make_stack()
    start_stack(stack, 1)
    override = tmp_path / "replicas.yaml"
    override.write_text("services:\n  app:\n    deploy:\n      replicas: 2\n")
    stack.env["COMPOSE_FILE"] = f"compose.yaml:{override}"
    with load_on(stack) as load:
        run = stack.reroll_json("app", *DRAIN, extra_env={"APP_VERSION": "v2"})
    assert run.returncode == 0 and run.outcome == "deployed", run
    plan = run.plan("app")
    assert len(plan["containers"]) == 1 and plan["replicas"] == 2, "the deploy ends with 2"
    assert {"level": "info", "message": "the compose file sets app to 2 container(s) (deploy.replicas); 1 run now: "
            "the deploy ends with 2"} in plan["messages"]
    assert len(stack.containers()) == 2 and load.report().failed == 0

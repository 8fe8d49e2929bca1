"""The rolling deploy against the real engine: the core paths of `docker reroll`."""

import json
import time

from dockerfixtures import APP_IMAGE, ROOT, docker, lock_and_journal, project_events


def ids(containers):
    return [c.id for c in containers]


def test_deploy_with_health_check_replaces_the_container_with_the_new_image(project):
    [old] = project.up(TAG="v1")
    assert project.image_of(old) == f"{APP_IMAGE}:v1"

    run = project.reroll_json("web", extra_env={"TAG": "v2"})

    assert run.returncode == 0 and run.outcome == "deployed" and run.result("web") == "deployed", run
    [new] = project.containers()
    assert new.id != old.id and new.running and new.health == "healthy"
    assert project.image_of(new) == f"{APP_IMAGE}:v2"
    assert docker("inspect", old.id, check=False).returncode != 0, "the old container must be removed"
    plan = run.plan("web")
    assert [c["id"] for c in plan["containers"]] == [old.id] and plan["batches"] == [{"start": 1, "retire": 1}], \
        "from 1 to 2 containers, then 1"
    assert run.containers(role="new", state="healthy") == [new.id]
    assert run.containers(role="old", state="removed") == [old.id]
    assert lock_and_journal(project) == [], "the lock and journal are released"


def test_two_replicas_stay_two_all_new(project):
    old = project.up(replicas=2, TAG="v1")
    assert len(old) == 2

    run = project.reroll_json("web", extra_env={"TAG": "v2"})

    assert run.returncode == 0 and run.outcome == "deployed", run
    new = project.containers()
    assert len(new) == 2 and not set(ids(new)) & set(ids(old))
    assert all(c.running and c.health == "healthy" and project.image_of(c) == f"{APP_IMAGE}:v2" for c in new)
    plan = run.plan("web")
    assert len(plan["containers"]) == 2 and plan["batches"] == [{"start": 2, "retire": 2}], "from 2 to 4 containers"
    assert sorted(run.containers(role="new", state="healthy")) == sorted(ids(new))


def test_without_health_check_waits_then_checks_the_new_containers_still_run(project_without_healthcheck):
    project = project_without_healthcheck
    [old] = project.up(TAG="v1")
    assert old.health is None

    run = project.reroll_json("web", "--wait", "2", extra_env={"TAG": "v2"})

    assert run.returncode == 0 and run.outcome == "deployed", run
    [new] = project.containers()
    assert new.id != old.id and project.image_of(new) == f"{APP_IMAGE}:v2"
    assert run.plan("web")["healthcheck"] is False
    assert run.said("waiting 2s (no health check) before checking the new containers", "info")
    assert run.containers(role="new", state="running") == [new.id]
    assert run.seconds >= 2


def test_without_health_check_a_new_container_that_dies_is_rolled_back(project_without_healthcheck):
    project = project_without_healthcheck
    [old] = project.up(TAG="v1")

    run = project.reroll_json("web", "--wait", "5", extra_env={"TAG": "v2", "CRASH": "1"})

    assert run.returncode == 1 and run.outcome == "rolled back" and run.result("web") == "failed (rolled back)", run
    assert "roll back" in run.phases("web")
    [crashed] = run.containers(role="new", state="exited")
    assert run.said("exited with code 3", "error") and crashed in run.containers(role="new", state="removed")
    assert ids(project.containers()) == [old.id] and project.containers()[0].running


def test_a_version_that_never_gets_healthy_is_rolled_back_and_the_old_one_keeps_running(project):
    [old] = project.up(TAG="v1")

    run = project.reroll_json("web", "--healthcheck-timeout", "4", extra_env={"TAG": "v2", "BROKEN": "1"})

    assert run.returncode == 1 and run.outcome == "rolled back" and run.result("web") == "failed (rolled back)", run
    assert run.logs("error")[-1] == "not healthy after 4s"
    assert any(d["title"].startswith("last 20 log lines of ") for d in run.typed("detail"))
    assert run.phases("web")[-1] == "roll back"
    [unhealthy] = run.containers(role="new", state="unhealthy")
    assert unhealthy in run.containers(role="new", state="removed")
    remaining = project.containers()
    assert ids(remaining) == [old.id] and remaining[0].running and remaining[0].health == "healthy"
    assert project.image_of(remaining[0]) == f"{APP_IMAGE}:v1"


def test_a_crashing_version_fails_at_once_not_at_the_timeout(project):
    [old] = project.up(TAG="v1")

    run = project.reroll_json("web", "--healthcheck-timeout", "60", extra_env={"TAG": "v2", "CRASH": "1"})

    assert run.returncode == 1 and run.outcome == "rolled back", run
    assert len(run.containers(role="new", state="exited")) == 1 and run.said("exited with code 3", "error")
    assert run.seconds < 20
    assert ids(project.containers()) == [old.id]


def test_first_start_starts_the_service_and_waits_for_health(project):
    assert project.containers() == []

    run = project.reroll_json("web")

    assert run.returncode == 0 and run.outcome == "deployed", run
    [started] = project.containers()
    assert started.running and started.health == "healthy"
    assert run.plan("web")["containers"] == [] and run.said("no running container of web: starting it", "info")
    assert run.containers(role="new", state="healthy") == [started.id]


def test_first_start_that_never_gets_healthy_exits_non_zero(project):
    run = project.reroll_json("web", "--healthcheck-timeout", "3", extra_env={"BROKEN": "1"})

    assert run.returncode == 1 and run.summary["exit_code"] == 1 and run.result("web") == "failed (rolled back)", run
    assert run.logs("error")[-1] == "not healthy after 3s"
    assert project.containers() == []


def test_exited_containers_are_removed_and_not_counted(project):
    first, second = project.up(replicas=2)
    docker("stop", "-t", "0", second.id)

    run = project.reroll_json("web", extra_env={"TAG": "v2"})

    assert run.returncode == 0 and run.outcome == "deployed", run
    assert [c["id"] for c in run.plan("web")["stale"]] == [second.id]
    assert run.containers(role="stale", state="removed") == [second.id]
    assert run.containers(role="old") == [first.id]
    [new] = project.containers()
    assert new.id not in (first.id, second.id) and project.image_of(new) == f"{APP_IMAGE}:v2"


def test_pre_stop_command_gets_the_full_id_and_the_old_container_turns_unhealthy_before_it_stops(project, tmp_path):
    [old] = project.up()
    record = tmp_path / "pre-stop.txt"
    since = time.time()

    run = project.reroll("web", "--pre-stop-cmd", f"echo {{id}} >> {record} && docker exec {{id}} touch /.dead",
                         "--pre-stop-wait-until-unhealthy", "--wait-after-unhealthy", "1.5", extra_env={"TAG": "v2"})

    assert run.returncode == 0, run.stderr
    assert record.read_text().split() == [old.id]
    events = [(at, action) for at, cid, action in project_events(project, since, time.time() + 1) if cid == old.id]
    actions = [action for _, action in events]
    assert "health_status: unhealthy" in actions and "kill" in actions, actions
    unhealthy_at = events[actions.index("health_status: unhealthy")][0]
    killed_at = events[actions.index("kill")][0]
    assert killed_at - unhealthy_at >= 1.5, "stopped only after --wait-after-unhealthy"
    assert actions[-1] == "destroy"


def test_a_failing_pre_stop_command_is_only_a_warning(project):
    project.up()

    run = project.reroll_json("web", "--pre-stop-cmd", "exit 7", extra_env={"TAG": "v2"})

    assert run.returncode == 0 and run.outcome == "deployed", run
    assert run.said("exited with 7", "warn")
    assert project.image_of(project.containers()[0]) == f"{APP_IMAGE}:v2"


def test_compose_flags_are_passed_to_every_compose_call(project, tmp_path):
    """-f (twice, order kept), --env-file, -p and --profile select exactly the project compose would."""
    stack = project.write(open(f"{project.directory}/compose.yaml").read(), "deploy/stack.yml")
    override = project.write("""
        services:
          web:
            environment:
              MARK: from-override
          extra:
            image: reroll-test-app:v1
            command: ["sleep", "3600"]
            profiles: ["extra"]
    """, "deploy/override.yml")
    env_file = project.write("TAG=v3\n", "deploy/prod.env")
    env = {k: v for k, v in project.env.items() if k != "COMPOSE_PROJECT_NAME"}
    flags = ["-f", stack, "--file", override, "--env-file", env_file, "-p", project.name]
    docker("compose", *flags, "up", "-d", "--wait", "web", env=env, cwd=str(tmp_path))
    [old] = project.containers()

    run = project.reroll(*flags, "--profile", "extra", "web", cwd=str(tmp_path),
                         extra_env={"COMPOSE_PROJECT_NAME": "someotherproject"})
    assert run.returncode == 0, run.stderr
    [new] = project.containers()
    assert new.id != old.id
    assert project.image_of(new) == f"{APP_IMAGE}:v3", "the --env-file was used"
    assert project.env_of(new)["MARK"] == "from-override", "both files, in order"
    assert project.containers("extra") == [], "--no-deps: nothing else was started"

    refused = project.reroll(*flags, "extra", cwd=str(tmp_path))
    assert refused.returncode == 3 and "disabled by its profiles" in refused.stderr
    allowed = project.reroll(*flags, "--profile", "extra", "extra", cwd=str(tmp_path))
    assert allowed.returncode == 0, allowed.stderr
    assert len(project.containers("extra")) == 1
    docker("compose", *flags, "--profile", "extra", "down", "-t", "0", env=env, cwd=str(tmp_path))


def test_a_scale_up_that_compose_cannot_do_is_rolled_back(project):
    """The new config names an image that cannot be had: compose fails, nothing new stays, the old one serves."""
    [old] = project.up()

    run = project.reroll_json("web", extra_env={"TAG": "no-such-tag"})

    assert run.returncode == 1 and run.outcome == "rolled back" and run.phases("web")[-1] == "roll back", run
    [rolling_back] = [message for message in run.logs("warn") if message.startswith("rolling back: ")]
    explained = rolling_back.split("` failed: ", 1)[1]  # compose's own words (a pull error), on the line that says why
    assert "Error" in explained and "its output is above" not in rolling_back
    remaining = project.containers()
    assert [c.id for c in remaining] == [old.id] and remaining[0].running


def test_the_traefik_example_is_a_valid_compose_file(base_env):
    result = docker("compose", "-f", f"{ROOT}/examples/traefik/compose.yaml", "config", "--format", "json",
                    env=base_env)
    config = json.loads(result.stdout)
    web = config["services"]["web"]
    assert web["labels"]["traefik_id"] == "reroll-example" and "container_name" not in web
    assert "! test -e /.dead" in " ".join(web["healthcheck"]["test"])
    assert "Label(`traefik_id`, `reroll-example`)" in " ".join(config["services"]["traefik"]["command"])


def test_old_containers_that_never_turn_unhealthy_are_stopped_after_the_timeout_with_a_warning(project):
    [old] = project.up()

    run = project.reroll_json("web", "--pre-stop-cmd", "true", "--pre-stop-wait-until-unhealthy",
                         "--healthcheck-timeout", "2", extra_env={"TAG": "v2"})

    assert run.returncode == 0 and run.outcome == "deployed", run
    assert "still healthy after 2s; stopping anyway" in run.logs("warn")
    assert run.containers(role="old", state="removed") == [old.id]
    [new] = project.containers()
    assert new.id != old.id and project.image_of(new) == f"{APP_IMAGE}:v2"


def test_several_new_containers_start_together_but_post_start_hooks_are_left_to_compose(project):
    """With more than one new container docker-reroll starts them itself; compose's post_start hooks only run
    when compose starts a container, so a service with hooks is scaled by plain `up`, and every hook runs."""
    project.up(replicas=2)
    together = project.reroll_json("web", extra_env={"TAG": "v2"})
    assert together.returncode == 0 and together.said("starting 2 new containers at once", "info"), together

    compose = open(f"{project.directory}/compose.yaml").read()
    project.write(compose.replace("    stop_grace_period: 5s\n",
                                  "    stop_grace_period: 5s\n    post_start:\n      - command: [touch, /hooked]\n"))
    hooked = project.reroll_json("web", extra_env={"TAG": "v3"})

    assert hooked.returncode == 0 and hooked.outcome == "deployed", hooked
    assert not hooked.said("at once") and hooked.said("compose starts the new containers itself", "info")
    new = project.containers()
    assert len(new) == 2 and all(project.image_of(c) == f"{APP_IMAGE}:v3" for c in new)
    for container in new:
        assert docker("exec", container.id, "test", "-e", "/hooked", check=False).returncode == 0

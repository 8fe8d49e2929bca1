"""Zero failed requests while `docker reroll` replaces a service behind a real health-aware proxy (HAProxy).

Each scenario runs the example stack (examples/haproxy), keeps 8 keep-alive clients busy against the proxy on
127.0.0.1 during the deploy, and prints the load report so CI logs show the figures.
"""

import time

from dockerfixtures import (
    DRAIN,
    iso_seconds,
    load_on,
    lock_and_journal,
    project_events,
    start_stack,
    versions_after,
)
from pids import group_members, pids_from


def deploy_under_load(stack, *args, **env):
    """Run `docker reroll app ARGS` while the clients run; returns (run, report, deploy start, deploy end)."""
    with load_on(stack) as load:
        started = time.time()
        run = stack.reroll_json("app", *args, extra_env=env)
        ended = time.time()
    print(f"[{stack.name}] reroll {' '.join(args)} {env} -> exit {run.returncode} in {run.seconds:.2f}s")
    for reason, count in sorted(load.report().failures.items()):
        print(f"  failed: {count} x {reason}")
    return run, load.report(), started, ended


def test_drain_recipe_one_replica_zero_failed_requests(stack):
    [old] = start_stack(stack, 1)

    run, report, _, ended = deploy_under_load(stack, *DRAIN, APP_VERSION="v2")

    assert run.returncode == 0 and run.outcome == "deployed", run
    assert report.failed == 0, report.failures
    assert report.total > 500
    assert versions_after(report, ended) == {"v2"}
    [new] = stack.containers()
    assert new.id != old.id
    assert run.containers(role="old", state="draining") == run.containers(role="old", state="removed") == [old.id]


def test_drain_recipe_three_replicas_zero_failed_requests(stack):
    old = start_stack(stack, 3)

    run, report, _, ended = deploy_under_load(stack, *DRAIN, APP_VERSION="v2")

    assert run.returncode == 0 and run.outcome == "deployed", run
    assert report.failed == 0, report.failures
    assert versions_after(report, ended) == {"v2"}
    new = stack.containers()
    assert len(new) == 3 and not {c.id for c in new} & {c.id for c in old}
    assert len({s.host for s in report.samples if s.start > ended}) == 3, "all three new containers serve"


def test_broken_version_is_rolled_back_within_the_timeout_with_zero_failed_requests(stack):
    [old] = start_stack(stack, 1)

    run, report, _, ended = deploy_under_load(stack, *DRAIN, "--healthcheck-timeout", "8",
                                              APP_VERSION="v2", APP_BROKEN="1")

    assert run.returncode == 1 and run.outcome == "rolled back", run
    assert run.logs("error")[-1] == "not healthy after 8s"
    assert run.seconds < 8 + 10, "exit soon after the timeout, the roll-back included"
    assert report.failed == 0, report.failures
    assert versions_after(report, ended) == {"v1"}
    assert [c.id for c in stack.containers()] == [old.id], "no broken container left"


def test_slow_starting_version_old_container_serves_untouched_until_the_new_one_is_healthy(stack):
    [old] = start_stack(stack, 1)

    run, report, started, ended = deploy_under_load(stack, *DRAIN, "--healthcheck-timeout", "40",
                                                    APP_VERSION="v2", APP_STARTUP_DELAY="10")

    assert run.returncode == 0 and run.outcome == "deployed", run
    assert report.failed == 0, report.failures
    [new] = stack.containers()
    events = project_events(stack, started - 1, ended + 1)
    healthy_at = min(t for t, cid, action in events if cid == new.id and action == "health_status: healthy")
    touched = [(t, action) for t, cid, action in events
               if cid == old.id and (action.startswith(("kill", "stop", "die")) or "touch" in action)]
    assert touched and min(t for t, _ in touched) > healthy_at, (healthy_at, touched)
    assert healthy_at - started >= 9, "the new version really took ~10 s to get healthy"
    v1_requests = [s for s in report.samples if s.version == "v1" and s.ok]
    assert max(s.end for s in v1_requests) >= healthy_at, "v1 kept answering until v2 was healthy"
    assert versions_after(report, ended) == {"v2"}


def test_control_stopping_without_a_drain_fails_requests(stack):
    """The same stack, deployed without the drain: the old containers are stopped while HAProxy still routes to
    them. If this showed no failures, the stack would be too forgiving to prove anything. The app shuts down
    gracefully, so a deploy can be lucky: up to 5 deploys, until requests fail."""
    start_stack(stack, 2)
    with load_on(stack) as load:
        for version in range(2, 7):
            run = stack.reroll_json("app", extra_env={"APP_VERSION": f"v{version}"})
            assert run.returncode == 0 and run.outcome == "deployed", run
            time.sleep(0.5)  # a request cut by the stop may end a moment after the deploy
            if load.report().failed:
                break
    assert load.report().failed > 0, "stopping without a drain must fail requests on this stack"


# ------------------------------------------------------------------- the new containers keep earning their place
# A new version whose Docker health check fails 3 s after start, once it has passed: Docker's check is the deeper
# one here (APP_DOCKER_CHECK_FAILS_AFTER), so HAProxy keeps routing to it, which is what keeps requests answered
# when the old containers have already been drained.
FAILS_AFTER_PASSING = {"APP_VERSION": "v2", "APP_DOCKER_CHECK_FAILS_AFTER": "3"}


def test_a_new_version_that_turns_unhealthy_during_wait_after_healthy_is_rolled_back(make_stack):
    stack = make_stack("tight")
    [old] = start_stack(stack, 1)

    run, report, _, ended = deploy_under_load(stack, *DRAIN, "--wait-after-healthy", "15", **FAILS_AFTER_PASSING)

    assert run.returncode == 1 and run.outcome == "rolled back", run
    [new] = run.containers(role="new", state="healthy")
    assert run.containers(role="new", state="unhealthy") == [new], "it passed its check first"
    assert run.said("turned unhealthy", "warn") and any(
        "dependency check failed" in d["text"] for d in run.typed("detail")), "the reason and its output"
    # Judged from the stream's own times, not the run's length: on a busy machine the scale-up and the roll-back
    # around the wait can take 15 s themselves.
    healthy = iso_seconds(run.typed("container", id=new, role="new", state="healthy")[0]["time"])
    turned = iso_seconds(next(e for e in run.typed("log", level="warn") if "turned unhealthy" in e["message"])["time"])
    assert turned - healthy < 10, \
        f"failed {turned - healthy:.1f}s after healthy: as soon as the health turned, not at the end of the 15 s wait"
    assert report.failed == 0, report.failures
    remaining = stack.containers()
    assert [c.id for c in remaining] == [old.id] and remaining[0].health == "healthy"
    assert versions_after(report, ended) == {"v1"}
    assert lock_and_journal(stack) == []


def test_after_the_point_of_no_return_the_old_containers_are_kept_while_no_new_one_serves(make_stack):
    """The new container turns unhealthy while the old one drains (a long --wait-after-unhealthy): the old one is
    not stopped, the run ends half-way with exit 5, lock and journal stay, and the next run finishes the job."""
    stack = make_stack("tight")
    [old] = start_stack(stack, 1)

    run, report, _, _ = deploy_under_load(stack, *DRAIN, "--wait-after-unhealthy", "6", **FAILS_AFTER_PASSING)

    assert run.returncode == 5 and run.outcome == "incomplete", run
    assert run.said("none of the new containers serves any more", "error")
    assert run.said("run `docker reroll app` again to finish", "error")
    assert old.id not in run.containers(state="stopping")
    assert report.failed == 0, report.failures
    left = {c.id: c for c in stack.containers()}
    assert old.id in left and left[old.id].running, "the old container was not stopped"
    [new] = [c for c in left.values() if c.id != old.id]
    assert new.health == "unhealthy" and stack.env_of(new)["APP_VERSION"] == "v2"
    assert len(lock_and_journal(stack)) == 2, "lock and journal tell the next run what to finish"

    rerun, report, _, ended = deploy_under_load(stack, *DRAIN, APP_VERSION="v3")

    assert rerun.returncode == 0 and rerun.outcome == "deployed", rerun
    assert rerun.plan("app")["journal"] is not None and rerun.said("an earlier deploy of app was interrupted", "warn")
    assert report.failed == 0, report.failures
    [final] = stack.containers()
    assert stack.env_of(final)["APP_VERSION"] == "v3" and final.id not in (old.id, new.id)
    assert versions_after(report, ended) == {"v3"}
    assert lock_and_journal(stack) == []


# ------------------------------------------------------------------------------------- every command is bounded


def leftover(groups_file):
    """What is still running of the pre-stop commands' process groups (each command wrote its shell's pid, which
    leads its group, to the file)."""
    return [pid for group in pids_from(str(groups_file)) for pid in group_members(group)]


def test_a_pre_stop_command_that_leaves_a_background_job_does_not_hold_the_deploy(stack, tmp_path):
    """Seen before: `sleep 600 &` kept the command's output open and the deploy waited for it, past the point of
    no return, beyond any interrupt. The limit here is 10 s (--healthcheck-timeout 5, at least 10)."""
    start_stack(stack, 1)
    groups = tmp_path / "groups"

    run, report, _, ended = deploy_under_load(
        stack, "--pre-stop-cmd", f"echo $$ >> {groups}; docker exec {{id}} touch /.dead; sleep 600.81 &",
        "--pre-stop-wait-until-unhealthy", "--healthcheck-timeout", "5", APP_VERSION="v2")

    assert run.returncode == 0 and run.outcome == "deployed", run
    assert run.seconds < 10 + 15
    assert report.failed == 0, report.failures
    assert versions_after(report, ended) == {"v2"}
    assert leftover(groups) == [], "what held the command's output was ended with it"


def test_a_pre_stop_command_past_its_limit_is_ended_with_its_group_and_the_deploy_goes_on(stack, tmp_path):
    start_stack(stack, 1)
    groups = tmp_path / "groups"

    run, report, _, ended = deploy_under_load(
        stack, "--pre-stop-cmd", f"echo $$ >> {groups}; docker exec {{id}} touch /.dead; sleep 600.82",
        "--pre-stop-wait-until-unhealthy", "--healthcheck-timeout", "5", APP_VERSION="v2")

    assert run.returncode == 0 and run.outcome == "deployed", run
    assert run.said("ran past 10s: ended it", "warn")
    assert 10 <= run.seconds < 10 + 15
    assert report.failed == 0, report.failures
    assert versions_after(report, ended) == {"v2"}
    assert leftover(groups) == []

"""Zero failed requests while `docker reroll` replaces a service behind a real health-aware proxy (HAProxy).

Each scenario runs the example stack (examples/haproxy), keeps 8 keep-alive clients busy against the proxy on
127.0.0.1 during the deploy, and prints the load report so CI logs show the figures.
"""

import time

from dockerfixtures import DRAIN, load_on, project_events, start_stack, versions_after


def deploy_under_load(stack, *args, **env):
    """Run `docker reroll app ARGS` while the clients run; returns (run, report, deploy start, deploy end)."""
    with load_on(stack) as load:
        started = time.time()
        run = stack.reroll("app", *args, extra_env=env)
        ended = time.time()
    print(f"[{stack.name}] reroll {' '.join(args)} {env} -> exit {run.returncode} in {run.seconds:.2f}s")
    for reason, count in sorted(load.report().failures.items()):
        print(f"  failed: {count} x {reason}")
    return run, load.report(), started, ended


def test_drain_recipe_one_replica_zero_failed_requests(stack):
    [old] = start_stack(stack, 1)

    run, report, _, ended = deploy_under_load(stack, *DRAIN, APP_VERSION="v2")

    assert run.returncode == 0, run.stderr
    assert report.failed == 0, report.failures
    assert report.total > 500
    assert versions_after(report, ended) == {"v2"}
    [new] = stack.containers()
    assert new.id != old.id


def test_drain_recipe_three_replicas_zero_failed_requests(stack):
    old = start_stack(stack, 3)

    run, report, _, ended = deploy_under_load(stack, *DRAIN, APP_VERSION="v2")

    assert run.returncode == 0, run.stderr
    assert report.failed == 0, report.failures
    assert versions_after(report, ended) == {"v2"}
    new = stack.containers()
    assert len(new) == 3 and not {c.id for c in new} & {c.id for c in old}
    assert len({s.host for s in report.samples if s.start > ended}) == 3, "all three new containers serve"


def test_broken_version_is_rolled_back_within_the_timeout_with_zero_failed_requests(stack):
    [old] = start_stack(stack, 1)

    run, report, _, ended = deploy_under_load(stack, *DRAIN, "--healthcheck-timeout", "8",
                                              APP_VERSION="v2", APP_BROKEN="1")

    assert run.returncode == 1 and "not healthy after 8s" in run.stderr
    assert run.seconds < 8 + 10, "exit soon after the timeout, the roll-back included"
    assert report.failed == 0, report.failures
    assert versions_after(report, ended) == {"v1"}
    assert [c.id for c in stack.containers()] == [old.id], "no broken container left"


def test_slow_starting_version_old_container_serves_untouched_until_the_new_one_is_healthy(stack):
    [old] = start_stack(stack, 1)

    run, report, started, ended = deploy_under_load(stack, *DRAIN, "--healthcheck-timeout", "40",
                                                    APP_VERSION="v2", APP_STARTUP_DELAY="10")

    assert run.returncode == 0, run.stderr
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
    them. If this showed no failures, the stack would be too forgiving to prove anything."""
    start_stack(stack, 2)

    run, report, _, _ = deploy_under_load(stack, APP_VERSION="v2")

    assert run.returncode == 0, run.stderr
    assert report.failed > 0, "stopping without a drain must fail requests on this stack"

"""An interrupted or paused deploy is finished by the next run, as the README promises: a deploy killed during
its scale-up to a new replica count, and a rolling update paused by its failure action."""

import os
import shutil
import signal
import tempfile
import time

from dockerfixtures import (
    APP_IMAGE,
    IDLE,
    child_pid,
    docker,
    finish,
    finish_json,
    journal_replicas,
    lock_and_journal,
    read_until,
    start_reroll,
)

SERVICE = f"""
services:
  web:
    image: {APP_IMAGE}:${{TAG:-v1}}
    command: ["sh", "-c", "{IDLE}"]
    volumes: ["${{SWITCH_DIR:-/tmp}}:/switch"]
    healthcheck:
      test: ["CMD", "sh", "-c", "! test -e /switch/fail-$$TAG"]
      interval: 1s
      timeout: 3s
      retries: 1
    environment:
      TAG: ${{TAG:-v1}}
    deploy:
      update_config:
        parallelism: ${{PARALLELISM:-0}}
        delay: 2s
        failure_action: pause
"""


def wait_gone(pid, timeout=60):
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)


def images(project):
    return sorted(c.image for c in project.containers(all_states=False))


def test_a_deploy_killed_during_its_scale_up_to_a_new_count_is_finished_by_the_next_run(project):
    project.write(SERVICE)
    project.up(2)
    deploy = start_reroll(project, "web", "--scale", "web=6", "--progress", "plain", extra_env={"TAG": "v2"})
    read_until(deploy, "scaling web from 2 to 8 containers")
    plugin = child_pid(deploy.pid)
    compose = child_pid(plugin)  # `docker compose up`, in a session of its own: it outlives the plugin
    os.kill(plugin, signal.SIGKILL)
    finish(deploy)
    wait_gone(compose)  # it finishes creating the new containers, which nobody starts
    assert journal_replicas(project) is not None, "the killed run left its journal"

    rerun = project.reroll_json("web", extra_env={"TAG": "v2"})

    assert rerun.returncode == 0 and rerun.outcome == "deployed", rerun
    plan = rerun.plan("web")
    assert plan["journal"]["replicas"] == 6 and plan["replicas"] == 6, "the interrupted deploy's count"
    assert rerun.said("an earlier deploy of web was interrupted; finishing it: the service goes to 6 container(s)",
                      "warn")
    assert images(project) == [f"{APP_IMAGE}:v2"] * 6
    assert lock_and_journal(project) == []


def test_a_rolling_update_paused_by_its_failure_action_is_finished_by_the_next_run(project):
    switch = tempfile.mkdtemp(prefix="reroll-switch-")
    env = {"TAG": "v2", "SWITCH_DIR": switch, "PARALLELISM": "1"}
    project.write(SERVICE)
    project.up(2, SWITCH_DIR=switch)
    deploy = start_reroll(project, "web", "--scale", "web=3", "--healthcheck-timeout", "3", "--progress", "json",
                          extra_env=env)
    seen = read_until(deploy, "waiting 2s before batch 3 of 3")
    open(os.path.join(switch, "fail-v2"), "w").close()  # batch 3's new container never gets healthy
    run = finish_json(deploy, seen)
    assert run.returncode == 1 and run.outcome == "failed" and run.result("web") == "failed", run
    assert run.phases("web").count("scale up") == 3, "paused in the third batch"
    assert run.said("failure_action pause", "error") and run.said("run `docker reroll web` again", "error")
    assert images(project) == [f"{APP_IMAGE}:v2"] * 2, "batches 1 and 2 replaced both old containers"
    os.remove(os.path.join(switch, "fail-v2"))

    rerun = project.reroll_json("web", extra_env=env)

    assert rerun.returncode == 0 and rerun.outcome == "deployed", rerun
    assert rerun.plan("web")["journal"]["replicas"] == 3
    assert images(project) == [f"{APP_IMAGE}:v2"] * 3, "the count the paused deploy was asked for"
    assert lock_and_journal(project) == []


DISTROLESS = "reroll-test-distroless:latest"  # busybox at /busybox and nothing else: no /bin/sh
DISTROLESS_SERVICE = f"""
services:
  web:
    image: {DISTROLESS}
    command: ["/busybox", "sh", "-c", "trap 'exit 0' TERM; while true; do /busybox sleep 3600 & wait $$!; done"]
    volumes: ["${{SWITCH_DIR}}:/switch"]
    environment:
      TAG: ${{TAG:-v1}}
    healthcheck:
      test: ["CMD", "/busybox", "sh", "-c", "! /busybox test -e /switch/fail-$$TAG"]
      interval: 1s
      timeout: 3s
      retries: 1
    deploy:
      update_config:
        parallelism: 1
        delay: 2s
"""


def distroless_image():
    if docker("image", "inspect", DISTROLESS, check=False).returncode == 0:
        return
    context = tempfile.mkdtemp(prefix="reroll-distroless-")
    shutil.copy("/bin/busybox", os.path.join(context, "busybox"))
    with open(os.path.join(context, "Dockerfile"), "w") as handle:
        handle.write("FROM scratch\nCOPY busybox /busybox\n")
    docker("build", "-q", "-t", DISTROLESS, context)
    shutil.rmtree(context, ignore_errors=True)


def test_a_rollback_across_batches_that_could_not_restore_a_shellless_image_is_refused_or_paused(project):
    """The old containers' exec-form health check could only be made again through /bin/sh, which the image
    lacks: the clones would never turn healthy and the run would end half-way. Said before the first change:
    a rollback the file asks for is refused, the default one becomes a pause."""
    distroless_image()
    switch = tempfile.mkdtemp(prefix="reroll-switch-")
    project.write(DISTROLESS_SERVICE + "        failure_action: rollback\n")
    project.up(2, SWITCH_DIR=switch)
    before = sorted(c.id for c in project.containers())

    asked = project.reroll("web", extra_env={"TAG": "v2", "SWITCH_DIR": switch})
    assert asked.returncode == 3, asked.stderr
    assert "failure_action rollback (deploy.update_config.failure_action) across batches cannot be kept: the old " \
           "containers use an exec-form (CMD) health check without /bin/sh" in asked.stderr
    assert sorted(c.id for c in project.containers()) == before, "nothing changed"
    project.write(DISTROLESS_SERVICE)  # failure_action left to docker-reroll's default

    deploy = start_reroll(project, "web", "--healthcheck-timeout", "3", "--progress", "json",
                          extra_env={"TAG": "v2", "SWITCH_DIR": switch})
    seen = read_until(deploy, "waiting 2s before batch 2 of 2")
    open(os.path.join(switch, "fail-v2"), "w").close()  # batch 2's new container never gets healthy
    run = finish_json(deploy, seen)
    plan = run.plan("web")
    assert plan["failure_action"] == "pause" and any("a failure after the first batch pauses instead" in m["message"]
                                                     for m in plan["messages"] if m["level"] == "warn"), run
    assert run.returncode == 1 and run.result("web") == "failed" and run.said("failure_action pause", "error"), run
    assert len(project.containers(all_states=False)) == 2, "the count held, nothing half-way"

"""An interrupted or paused deploy is finished by the next run, as the README promises: a deploy killed during
its scale-up to a new replica count, and a rolling update paused by its failure action."""

import os
import signal
import tempfile
import time

from dockerfixtures import APP_IMAGE, child_pid, finish, journal_replicas, lock_and_journal, read_until, start_reroll

SERVICE = f"""
services:
  web:
    image: {APP_IMAGE}:${{TAG:-v1}}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
    volumes: ["${{SWITCH_DIR:-/tmp}}:/switch"]
    healthcheck:
      test: ["CMD", "sh", "-c", "! test -e /switch/fail-$$TAG"]
      interval: 1s
      timeout: 1s
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

    rerun = project.reroll("web", extra_env={"TAG": "v2"})

    assert rerun.returncode == 0, rerun.stderr
    assert "an earlier deploy of web was interrupted; finishing it: the service goes to 6 container(s)" \
        in rerun.stderr
    assert images(project) == [f"{APP_IMAGE}:v2"] * 6
    assert lock_and_journal(project) == []


def test_a_rolling_update_paused_by_its_failure_action_is_finished_by_the_next_run(project):
    switch = tempfile.mkdtemp(prefix="reroll-switch-")
    env = {"TAG": "v2", "SWITCH_DIR": switch, "PARALLELISM": "1"}
    project.write(SERVICE)
    project.up(2, SWITCH_DIR=switch)
    deploy = start_reroll(project, "web", "--scale", "web=3", "--healthcheck-timeout", "3", "--progress", "plain",
                          extra_env=env)
    read_until(deploy, "waiting 2s before batch 3 of 3")
    open(os.path.join(switch, "fail-v2"), "w").close()  # batch 3's new container never gets healthy
    rest = finish(deploy)
    assert deploy.returncode == 1 and "failure_action pause" in rest and "run `docker reroll web` again" in rest, rest
    assert images(project) == [f"{APP_IMAGE}:v2"] * 2, "batches 1 and 2 replaced both old containers"
    os.remove(os.path.join(switch, "fail-v2"))

    rerun = project.reroll("web", extra_env=env)

    assert rerun.returncode == 0, rerun.stderr
    assert images(project) == [f"{APP_IMAGE}:v2"] * 3, "the count the paused deploy was asked for"
    assert lock_and_journal(project) == []

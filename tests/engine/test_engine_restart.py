"""The engine restarts in the middle of a deploy (an upgrade, `live-restore` off): the deploy says the engine is
unreachable, waits for it, and goes on from what the engine then shows. This stops the engine under every other
test: it must run alone (the serial phase of scripts/test.sh)."""

import os
import signal
import subprocess
import time

import pytest

from dockerfixtures import APP_IMAGE, JSON_STREAM, docker, finish_json, read_until_said, start_reroll

pytestmark = pytest.mark.exclusive

# Ready 4 s after its process starts (again after an engine restart), and restarted by the engine.
SERVICE = f"""
services:
  web:
    image: {APP_IMAGE}:${{TAG:-v1}}
    command:
      - sh
      - -c
      - "rm -f /tmp/ready; trap 'exit 0' TERM; sleep 4; touch /tmp/ready; while true; do sleep 0.1; done"
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "test", "-e", "/tmp/ready"]
      interval: 1s
      timeout: 1s
      retries: 30
"""
PID_FILE = "/var/run/docker.pid"


def restart_engine(down_seconds):
    """Stop dockerd as a service manager would (SIGTERM), keep it down, start it again as provisioning does."""
    with open(PID_FILE) as handle:
        pid = int(handle.read().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}"), "dockerd did not stop"
    time.sleep(down_seconds)
    with open("/var/log/dockerd.log", "ab") as log:
        subprocess.Popen(["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "dockerd did not come back"
        time.sleep(0.5)


def test_an_engine_restart_during_the_wait_for_new_containers_is_waited_out(project):
    project.write(SERVICE)
    project.up(2)
    old = {c.id for c in project.containers()}
    deploy = start_reroll(project, "web", extra_env={**JSON_STREAM, "TAG": "v2"})
    seen = read_until_said(deploy, "new container(s) to be healthy", "info")
    time.sleep(1)
    restart_engine(down_seconds=3)
    run = finish_json(deploy, seen, timeout=180)

    assert run.returncode == 0 and run.outcome == "deployed" and "roll back" not in run.phases("web"), run
    # the outage and the wait for the engine are said only in the log
    assert run.said("the Docker engine does not answer (Cannot connect to the Docker daemon", "warn")
    assert run.said("the Docker engine answers again after", "info")
    claims = run.logs() + [f"{d['title']}\n{d['text']}" for d in run.typed("detail")]
    assert not any("unhealthy" in c or "was removed" in c for c in claims), "nothing it did not see is claimed"
    assert run.containers(role="new", state="unhealthy") == run.containers(role="new", state="removed") == []
    now = project.containers(all_states=False)
    assert len(now) == 2 and not {c.id for c in now} & old
    assert {docker("exec", c.id, "cat", "/version").stdout.strip() for c in now} == {"v2"}

"""The engine restarts in the middle of a deploy (an upgrade, `live-restore` off): the deploy says the engine is
unreachable, waits for it, and goes on from what the engine then shows. This stops the engine under every other
test: it must run alone (the exclusive phase of scripts/test.sh)."""

import os
import signal
import subprocess
import time

import pytest

from dockerfixtures import APP_IMAGE, JSON_STREAM, docker, finish_json, read_until_said, stack_url, start_reroll
from pids import command, running

pytestmark = pytest.mark.exclusive

# Ready 4 s after its process starts (again after an engine restart), and restarted by the engine.
SERVICE = f"""
services:
  web:
    image: {APP_IMAGE}:${{TAG:-v1}}
    command:
      - sh
      - -c
      - "rm -f /ready; trap 'exit 0' TERM; sleep 4; touch /ready; while true; do sleep 3600 & wait $$!; done"
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "test", "-e", "/ready"]
      interval: 1s
      timeout: 3s
      retries: 30
"""
PID_FILE = "/var/run/docker.pid"


def restart_engine(down_seconds):
    """Stop dockerd as a service manager would (SIGTERM), keep it down, start it again as provisioning does."""
    with open(PID_FILE) as handle:
        pid = int(handle.read().strip())
    # A pid file left by an engine that died names whatever process has that pid now: never signal that one.
    assert command(pid) == "dockerd", f"{PID_FILE} names pid {pid}, which is {command(pid)!r}, not dockerd"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while running(pid) and time.monotonic() < deadline:  # ended: a zombie nobody reaped counts as stopped
        reap_engines()
        time.sleep(0.1)
    assert not running(pid), "dockerd did not stop"
    time.sleep(down_seconds)
    with open("/var/log/dockerd.log", "ab") as log:
        STARTED.append(subprocess.Popen(["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                        start_new_session=True))
    deadline = time.monotonic() + 120
    while not answers():
        assert time.monotonic() < deadline, "dockerd did not come back"
        time.sleep(0.5)


def answers() -> bool:
    try:  # an engine on its way up may take a connection and not answer it
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


STARTED: "list[subprocess.Popen]" = []  # the engines these tests started: theirs to reap once they end


def reap_engines():
    for process in STARTED:
        process.poll()


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
    # (the settings line names options such as --pre-stop-wait-until-unhealthy: not a claim about a container)
    claims = [m for m in run.logs() if not m.startswith("settings for ")]
    claims += [f"{d['title']}\n{d['text']}" for d in run.typed("detail")]
    assert not any("unhealthy" in c or "was removed" in c for c in claims), "nothing it did not see is claimed"
    assert run.containers(role="new", state="unhealthy") == run.containers(role="new", state="removed") == []
    now = project.containers(all_states=False)
    assert len(now) == 2 and not {c.id for c in now} & old
    assert {docker("exec", c.id, "cat", "/version").stdout.strip() for c in now} == {"v2"}


# examples/proxy-haproxy as a user runs it for good: the engine starts the proxy and the app again after it restarts.
RESTARTED = """
services:
  app:
    restart: unless-stopped
  proxy:
    restart: unless-stopped
"""


def answering_hosts(stack, tries=20):
    """The app containers that answer through the proxy over a few requests (empty while any request fails)."""
    import urllib.request

    hosts = set()
    for _ in range(tries):
        try:
            with urllib.request.urlopen(stack_url(stack), timeout=2) as answer:
                hosts.add(tuple(answer.read().decode().split()))
        except OSError:
            return set()
    return hosts


def wait_answering(stack, count, timeout=60):
    deadline = time.monotonic() + timeout
    while len(answering_hosts(stack)) != count:
        assert time.monotonic() < deadline, f"the proxy does not answer through {count} containers"
        time.sleep(0.5)
    return answering_hosts(stack)


def test_proxy_mode_routes_again_by_itself_after_an_engine_restart_and_deploys_on(proxy_stack):
    """The proxy at rest finds the service's containers through Docker's DNS: after the engine (and with it the
    proxy and the app) restarted, it routes to them without docker-reroll, and the next deploy drives it."""
    stack = proxy_stack(RESTARTED)
    stack.compose("up", "-d", "--scale", "app=2")
    before = wait_answering(stack, 2)
    restart_engine(down_seconds=1)
    assert wait_answering(stack, 2) == before, "the same containers, started again, serve"
    deploy = stack.reroll("app", extra_env={"APP_VERSION": "v2", **JSON_STREAM})
    assert deploy.returncode == 0 and '"outcome":"deployed"' in deploy.stderr, deploy.stderr[-2000:]
    assert {version for version, _ in wait_answering(stack, 2)} == {"v2"}

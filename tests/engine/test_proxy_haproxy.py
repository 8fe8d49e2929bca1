"""Proxy mode with HAProxy against the real engine: examples/proxy-haproxy (Debian's HAProxy 2.6 with the official
image's command line), each test a project of its own, what happened read from the JSON progress stream.

The proofs of zero failed requests each run ten consecutive deploys under a strict load (keep-alive
clients for which every error counts): the example as is; an app that exits at once on SIGTERM with 1.5 s
requests; no Docker health check (the proxy's own check decides, not a clock); a TCP service; a 5 s stream across
each switch. The others: a connection still open at the drain timeout, an interrupt and a kill during the switch,
and compose's own commands on the project.

None is `serial`: proxy mode has no clock to race (the proxy's own check, then its connections, decide), so its
claims must hold on a busy machine too, beside the other tests of the parallel phase.
"""

import http.client
import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, List

import pytest

from docker_reroll.haproxy import HAProxyDriver
from docker_reroll.model import parse_compose_config
from docker_reroll.proxy import plan_routes, routes_of
from dockerfixtures import (
    LOAD_RATE,
    ROOT,
    ComposeProject,
    Run,
    child_pid,
    connection_after_answer,
    docker,
    finish,
    iso_seconds,
    load_on,
    lock_and_journal,
    proxy_answering,
    read_until,
    session_loops,
    start_proxy_stack,
    start_reroll,
    started_at,
    versions_after,
)
from tcpload import LineClients

pytestmark = pytest.mark.xdist_group("haproxy")  # one at a time: scripts/test.sh says why

EXAMPLE = os.path.join(ROOT, "examples", "proxy-haproxy")
VERSIONS = [f"v{n}" for n in range(2, 12)]  # ten deploys after v1

# Requests of 1.5 s to an app that ends the moment it gets SIGTERM, with a Docker health check of its own.
LONG_REQUESTS = """
services:
  app:
    environment:
      APP_EXIT_AT_ONCE: "1"
      APP_RESPONSE_DELAY: "1.5"
    healthcheck:
      test: ["CMD", "/usr/local/bin/healthcheck"]
      interval: 1s
      timeout: 3s
      retries: 2
"""
# No Docker health check; the proxy checks GET /health, which says 503 for the first 2 s of a container.
PROXY_CHECK = """
services:
  app:
    environment:
      APP_STARTUP_DELAY: "2"
    labels:
      docker-reroll.proxy-health: /health
"""
# Client keep-alive off: HAProxy closes each client connection after its answer.
NO_CLIENT_KEEPALIVE = """
services:
  app:
    labels:
      docker-reroll.proxy-client-keepalive: "false"
"""
TCP = """
services:
  app:
    environment:
      APP_MODE: tcp-echo
    labels:
      docker-reroll.proxy-protocol: tcp
"""


# ------------------------------------------------------------------------------------------------------ helpers


@dataclass
class Deployed:
    """One `docker reroll app --progress json` and its events."""

    run: Run
    events: List[Dict[str, object]]

    @property
    def summary(self) -> Dict[str, object]:
        return next(e for e in self.events if e["type"] == "summary")

    @property
    def phases(self) -> List[str]:
        return [str(e["phase"]) for e in self.events if e["type"] == "phase"]

    @property
    def connections(self) -> List[Dict[str, int]]:
        """The connections the proxy still held to each old container, as the drain saw them change."""
        return [e["connections"] for e in self.events if e["type"] == "connections"]  # type: ignore[misc]

    def seconds(self, phase: str) -> float:
        return sum(float(p["seconds"]) for p in self.summary["phases"] if p["phase"] == phase)  # type: ignore

    def said(self, text: str) -> List[Dict[str, object]]:
        return [e for e in self.events if e["type"] == "log" and text in str(e["message"])]

    def deployed(self) -> None:
        assert self.run.returncode == 0 and self.summary["outcome"] == "deployed", self.run.stderr
        assert "proxy" in self.phases, self.phases


def json_events(text: str) -> List[Dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def deploy(stack: ComposeProject, *args: str, service: str = "app", **env: str) -> Deployed:
    run = stack.reroll(service, "--progress", "json", *args, extra_env=env)
    return Deployed(run, json_events(run.stderr))


def at(event: Dict[str, object]) -> float:
    return iso_seconds(str(event["time"]))


def running_hosts(stack: ComposeProject) -> set:
    return {c.id[:12] for c in stack.containers() if c.running}


def ten_deploys(stack: ComposeProject, load, *args: str, check=lambda done, version: None) -> None:
    """Ten deploys in a row, each of a new APP_VERSION; after each, only that version answers."""
    for version in VERSIONS:
        done = deploy(stack, *args, APP_VERSION=version)
        done.deployed()
        check(done, version)
        ended = time.time()
        assert load.wait_for(lambda r, since=ended: any(s.start > since for s in r.samples), timeout=10)
    time.sleep(1)
    report = load.report()
    assert versions_after(report, ended) == {VERSIONS[-1]}


# ---------------------------------------------------------------------------------------------- the example


def test_the_examples_haproxy_cfg_is_the_configuration_generated_for_its_labels(base_env):
    """The compose file as compose reads it (no container is made): its routes give the committed haproxy.cfg."""
    project = parse_compose_config(docker("compose", "-p", "rerollcfg", "config", "--format", "json",
                                          env=base_env, cwd=EXAMPLE).stdout)
    routes = plan_routes(project)
    assert [(r.service, r.proxy, r.kind, r.port, r.protocol) for r in routes.values()] == \
        [("app", "proxy", "haproxy", 8080, "http")]
    with open(os.path.join(EXAMPLE, "haproxy.cfg"), encoding="utf-8") as handle:
        assert handle.read() == HAProxyDriver(None).config(routes_of(routes, "proxy"))  # type: ignore[arg-type]


def test_the_example_as_is_deploys_ten_times_under_load_with_no_failed_request(proxy_stack):
    """No option, no Docker health check: HAProxy's own check (a connect) makes a new container ready, not the
    10 s of --wait."""
    stack = proxy_stack()
    start_proxy_stack(stack, replicas=2)

    def check(done: Deployed, version: str) -> None:
        assert done.seconds("wait until ready") < 5, done.summary["phases"]
        assert len(done.summary["services"][0]["new"]) == 2  # type: ignore[index]

    with load_on(stack, max_duration=600) as load:
        ten_deploys(stack, load, check=check)
    assert load.report().failed == 0, load.report().failures
    assert session_loops(stack) == [], "each deploy ended its session with HAProxy"


def test_an_app_that_exits_at_once_on_sigterm_loses_none_of_its_long_requests(proxy_stack):
    """Each of 16 clients starts a 1.5 s request every 1.6 s: about 15 in flight at every switch. Each old container
    is stopped only once the proxy holds no request to it."""
    stack = proxy_stack(LONG_REQUESTS)
    start_proxy_stack(stack)

    def check(done: Deployed, version: str) -> None:
        held = [sum(c.values()) for c in done.connections]
        assert held and held[0] > 0 and held[-1] == 0, held

    with load_on(stack, clients=16, rate=10, warm_up=16, settle=2, max_duration=600) as load:
        ten_deploys(stack, load, check=check)
    report = load.report()
    assert report.failed == 0, report.failures
    assert report.latency_percentile(0) >= 1.5, "the requests were long ones"


def test_without_a_docker_health_check_the_proxys_check_decides_not_a_clock(proxy_stack):
    """GET /health answers 503 for a new container's first 2 s: the deploy waits for that, however long --wait
    says, and no request reaches the new container before its check passed."""
    stack = proxy_stack(PROXY_CHECK)
    start_proxy_stack(stack)

    def check(done: Deployed, version: str) -> None:
        assert done.seconds("wait until ready") < 15, done.summary["phases"]
        assert float(done.summary["seconds"]) < 60  # type: ignore[arg-type]
        [passed] = done.said("the proxy's check passes")
        # From the container's start, not from the phase's: on a busy machine the scale-up itself can take most
        # of the 2 s.
        [new] = done.summary["services"][0]["new"]  # type: ignore[index]
        waited = at(passed) - started_at(new["id"])
        assert waited >= 2.0, f"the check passed {waited:.2f}s after the container's start, while /health said 503"
        windows[version] = at(passed)

    windows: Dict[str, float] = {}
    with load_on(stack, max_duration=600) as load:
        ten_deploys(stack, load, "--wait", "60", check=check)
    report = load.report()
    assert report.failed == 0, report.failures
    for version, passed in windows.items():
        assert report.window(version=version).first >= passed - 0.05, (version, passed)


def test_a_tcp_service_switches_ten_times_and_no_connection_is_cut(proxy_stack):
    """Clients hold a connection 3 s each, a line every 100 ms: those open at a switch stay with the old container
    until they end, then it is stopped."""
    stack = proxy_stack(TCP)
    start_proxy_stack(stack, tcp=True)

    def check(done: Deployed, version: str) -> None:
        held = [sum(c.values()) for c in done.connections]
        assert held and held[0] > 0 and held[-1] == 0, held
        assert "cut_connections" not in done.summary["services"][0]  # type: ignore[operator]

    with LineClients("127.0.0.1", int(stack.env["PROXY_PORT"]), clients=6, hold=3) as lines:
        for version in VERSIONS:
            deployed = deploy(stack, APP_VERSION=version)
            deployed.deployed()
            check(deployed, version)
        time.sleep(2)
    assert lines.done() > 50 and not lines.failed(), lines.failed()[:5]
    assert all(len(c.hosts) == 1 for c in lines.connections if c.answered), "a connection stays where it began"


def test_a_tcp_connection_still_open_at_the_drain_timeout_is_cut_and_counted(proxy_stack):
    stack = proxy_stack(TCP)
    start_proxy_stack(stack, tcp=True)
    [old] = [c for c in stack.containers() if c.running]
    with LineClients("127.0.0.1", int(stack.env["PROXY_PORT"]), clients=1, hold=60) as held:
        while not held.connections or held.connections[0].answered < 3:
            time.sleep(0.1)
        done = deploy(stack, "--drain-timeout", "2", APP_VERSION="v2")
    done.deployed()
    assert done.summary["services"][0]["cut_connections"] == {old.name: 1}  # type: ignore[index]
    [warned] = done.said("connection(s) still open after 2s: cut")
    assert f"{old.name} 1" in str(warned["message"])
    first = held.connections[0]
    assert first.error == "EOF" and first.hosts == {old.id[:12]}
    switched = at(done.said("keep their connections and get no new ones")[0])
    assert 2 <= first.ended - switched < 6, first.ended - switched
    assert held.connections[1].ok and held.connections[1].hosts != {old.id[:12]}, "the client came back, to v2"


def test_a_five_second_stream_across_each_switch_is_not_cut(proxy_stack):
    stack = proxy_stack()
    start_proxy_stack(stack)
    with load_on(stack, rate=50, max_duration=600) as load:
        for version in VERSIONS[:3]:  # 5 s each: the ten-deploy tests catch the races
            [old] = [c for c in stack.containers() if c.running]
            # Once the proxy is pinned to the old container and the new one starts: the stream then runs across
            # the switch however long the deploy took to get there (a stream begun before the deploy may end first
            # on a busy machine).
            process = start_reroll(stack, "app", "--progress", "json", extra_env={"APP_VERSION": version})
            seen = read_until(process, '"phase":"scale up"')
            stream = Stream(stack)
            assert stream.first_line.wait(10), stream.lines
            output = seen + finish(process)
            done = Deployed(Run(process.returncode, "", output, 0.0), json_events(output))
            stream.join(15)
            done.deployed()
            switched = at(done.said("keep their connections and get no new ones")[0])
            assert stream.started < switched < stream.ended, "the stream ran across the switch"
            assert stream.complete and len(stream.lines) == 10, stream.lines
            assert {line.split()[1] for line in stream.lines} == {old.id[:12]}
            assert [sum(c.values()) for c in done.connections][0] >= 1
    assert load.report().failed == 0, load.report().failures


class Stream(threading.Thread):
    """GET /stream?seconds=5 through the proxy: its lines, and whether it ended as a chunked response ends."""

    def __init__(self, stack: ComposeProject) -> None:
        super().__init__(daemon=True)
        self.port = int(stack.env["PROXY_PORT"])
        self.lines: List[str] = []
        self.complete = False
        self.first_line = threading.Event()
        self.started = time.time()
        self.ended = float("inf")
        self.start()

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/stream?seconds=5")
            answer = connection.getresponse()
            while True:
                line = answer.readline()
                if not line:
                    break
                self.lines.append(line.decode().strip())
                self.first_line.set()
            self.complete = True  # the last chunk came: a connection cut before it raises IncompleteRead
        except (OSError, http.client.HTTPException) as error:
            self.lines.append(f"error: {type(error).__name__}")
        finally:
            connection.close()
            self.ended = time.time()


# ------------------------------------------------------------------------------- interrupts, crashes, compose


@contextmanager
def in_a_switch(proxy_stack):
    """Two containers with 1.5 s requests under load, and a deploy to v2 in its switch (its `proxy` phase):
    yields the stack, the deploy's process (`docker reroll`, in a session of its own) and the load."""
    stack = proxy_stack(LONG_REQUESTS)
    start_proxy_stack(stack, replicas=2)
    with load_on(stack, clients=16, rate=10, warm_up=16, settle=3) as load:
        process = start_reroll(stack, "app", "--progress", "json", extra_env={"APP_VERSION": "v2"})
        read_until(process, '"phase":"proxy"')
        yield stack, process, load


def answered_after(load, moment: float, hosts: set) -> None:
    """Wait (up to 15 s) until each of `hosts` has answered a request started after `moment`, so that what serves
    after a run is judged on requests that had time to end (1.5 s each here, on a machine that may be busy), not on
    whichever fitted in the load's last seconds; the test's assertions then read the final report."""
    load.wait_for(lambda report: {s.host for s in report.samples if s.ok and s.start > moment} >= hosts, timeout=15)


def test_ctrl_c_during_the_switch_leaves_the_proxy_on_containers_that_serve(proxy_stack):
    with in_a_switch(proxy_stack) as (stack, process, load):
        os.killpg(process.pid, signal.SIGINT)
        events = json_events(finish(process))
        ended = time.time()
        answered_after(load, ended, running_hosts(stack))
    report = load.report()
    assert report.failed == 0, report.failures
    assert process.returncode == 130, events[-1]
    assert versions_after(report, ended) == {"v2"}
    assert {s.host for s in report.samples if s.start > ended} == running_hosts(stack)
    assert len(running_hosts(stack)) == 2 and lock_and_journal(stack) == []


def test_a_deploy_killed_during_the_switch_is_finished_by_the_next_run_with_no_failed_request(proxy_stack):
    with in_a_switch(proxy_stack) as (stack, process, load):
        os.kill(child_pid(process.pid), signal.SIGKILL)
        finish(process)
        assert lock_and_journal(stack), "the killed run left its lock and journal"
        rerun = deploy(stack, APP_VERSION="v2")
        ended = time.time()
        answered_after(load, ended, running_hosts(stack))
    rerun.deployed()
    assert rerun.said("finishing it"), rerun.run.stderr
    report = load.report()
    assert report.failed == 0, report.failures
    assert versions_after(report, ended) == {"v2"}
    assert len(running_hosts(stack)) == 2 and lock_and_journal(stack) == []


def test_compose_down_and_up_keep_working_after_deploys(proxy_stack):
    stack = proxy_stack()
    start_proxy_stack(stack, replicas=2)
    deploy(stack, APP_VERSION="v2").deployed()
    down = stack.compose("down", extra_env={"APP_VERSION": "v2"})
    assert "orphan" not in (down.stdout + down.stderr).lower(), down.stderr
    assert docker("network", "ls", "-q", "--filter", f"name={stack.name}_default").stdout.strip() == ""
    assert docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={stack.name}").stdout.strip() == ""
    up = stack.compose("up", "-d", "--scale", "app=2", extra_env={"APP_VERSION": "v2"})
    assert "orphan" not in (up.stdout + up.stderr).lower(), up.stderr
    start_proxy_stack(stack, replicas=2, APP_VERSION="v2")
    assert proxy_answering(stack) == running_hosts(stack)
    assert connection_after_answer(stack) == "kept", "client keep-alive, by default"


def test_without_client_keepalive_each_answer_closes_its_connection_and_a_deploy_loses_nothing(proxy_stack):
    """The label adds `http-response set-header Connection close` to the route's backend: HAProxy closes the
    client's connection after each answer, at rest and after a deploy under the strict load."""
    stack = proxy_stack(NO_CLIENT_KEEPALIVE)
    start_proxy_stack(stack)
    assert connection_after_answer(stack) == "closed"
    with load_on(stack) as load:
        deploy(stack, APP_VERSION="v2").deployed()
        ended = time.time()
    report = load.report()
    assert report.failed == 0 and versions_after(report, ended) == {"v2"}, report.summary()
    assert connection_after_answer(stack) == "closed"


def test_a_recreated_or_restarted_proxy_routes_to_the_service_by_itself(proxy_stack):
    stack = proxy_stack()
    start_proxy_stack(stack, replicas=2)
    deploy(stack, APP_VERSION="v2").deployed()
    serving = running_hosts(stack)
    stack.compose("up", "-d", "--force-recreate", "proxy", extra_env={"APP_VERSION": "v2"})
    start_proxy_stack(stack, replicas=2, APP_VERSION="v2")
    assert proxy_answering(stack) == serving
    [proxy] = stack.containers("proxy")
    docker("restart", proxy.id)
    start_proxy_stack(stack, replicas=2, APP_VERSION="v2")
    assert proxy_answering(stack) == serving
    assert deploy(stack, APP_VERSION="v3").run.returncode == 0, "and it can be driven again"


def test_a_proxy_without_the_runtime_api_is_refused_before_any_change(proxy_stack):
    """The configuration is read from the proxy's container (a bind mount here, so the test edits its file)."""
    stack = proxy_stack("services: {}\n")
    start_proxy_stack(stack)
    before = running_hosts(stack)
    config = stack.env["COMPOSE_FILE"].split(":")[-1].replace("config.yaml", "proxy.cfg")
    with open(config, encoding="utf-8") as handle:
        text = handle.read()
    with open(config, "w", encoding="utf-8") as handle:
        handle.write(text.replace("    stats socket", "    # stats socket"))
    dry = stack.reroll("app", "--dry-run")
    refused = deploy(stack, APP_VERSION="v2")
    assert dry.returncode == 3 and "no runtime API for docker-reroll" in dry.stderr, dry.stderr
    assert refused.run.returncode == 3 and refused.summary["outcome"] == "refused", refused.run.stderr
    assert "`stats socket ipv4@127.0.0.1:61999 level admin`" in refused.run.stderr
    assert running_hosts(stack) == before


# Two services behind one proxy on one port, told apart by host name; Docker health checks on both, so that a
# broken version is seen as such (GET / answers even then).
TWO_SERVICES = """
services:
  app:
    healthcheck: &check
      test: ["CMD", "/usr/local/bin/healthcheck"]
      interval: 1s
      timeout: 3s
      retries: 2
  api:
    image: ${APP_IMAGE:-reroll-proxy-example-app:latest}
    environment:
      APP_VERSION: api-${API_VERSION:-v1}
      APP_BROKEN: ${API_BROKEN:-0}
    labels:
      docker-reroll.proxy: proxy
      docker-reroll.proxy-host: api.test
    healthcheck: *check
"""


def test_a_release_of_two_services_behind_one_proxy_batches_and_a_roll_back_lose_no_request(proxy_stack):
    """`--all` switches each service in turn, routed by host name on one port; a broken version of one is rolled
    back while both keep serving; `--max-surge 1` replaces two replicas one at a time. Each under its own load."""
    stack = proxy_stack(TWO_SERVICES)
    start_proxy_stack(stack, replicas=2)
    with load_on(stack, rate=LOAD_RATE / 2, max_duration=600) as app_load, \
            load_on(stack, rate=LOAD_RATE / 2, max_duration=600, host="api.test") as api_load:
        release = stack.reroll("--all", "--progress", "json", extra_env={"APP_VERSION": "v2", "API_VERSION": "v2"})
        events = json_events(release.stderr)
        summary = events[-1]
        assert release.returncode == 0 and summary["outcome"] == "deployed", release.stderr
        results = {s["service"]: s["result"] for s in summary["services"]}  # type: ignore[union-attr]
        assert results["app"] == results["api"] == "deployed", results
        assert sorted(p["service"] for p in summary["phases"] if p["phase"] == "proxy") == ["api", "app"]  # type: ignore
        released = time.time()
        assert api_load.wait_for(lambda r: versions_after(r, released) == {"api-v2"}, timeout=10)

        broken = deploy(stack, "--healthcheck-timeout", "8", service="api",
                        APP_VERSION="v2", API_VERSION="v3", API_BROKEN="1")
        assert broken.run.returncode == 1 and broken.summary["outcome"] == "rolled back", broken.run.stderr
        assert "proxy" not in broken.phases, "the proxy was never switched to the broken version"
        rolled_back = time.time()

        batches = deploy(stack, "--max-surge", "1", APP_VERSION="v3", API_VERSION="v2")
        batches.deployed()
        plan = next(e for e in batches.events if e["type"] == "plan")
        assert plan["services"][0]["batches"] == [{"start": 1, "retire": 1}] * 2, plan  # type: ignore[index]
        ended = time.time()
        assert app_load.wait_for(lambda r: any(s.start > ended for s in r.samples), timeout=10)
    for load in (app_load, api_load):
        assert load.report().failed == 0, load.report().failures
    assert versions_after(api_load.report(), rolled_back) == {"api-v2"}, "the old version kept serving"
    assert versions_after(app_load.report(), ended) == {"v3"}
    assert len(running_hosts(stack)) == 2 and len([c for c in stack.containers("api") if c.running]) == 1
    assert lock_and_journal(stack) == []

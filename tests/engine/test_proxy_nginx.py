"""Proxy mode with nginx against the real engine: examples/proxy-nginx (and overrides of it from
tests/stacks/proxy-nginx) deployed under load, ten times in a row, with nothing lost; an app that exits at once on
SIGTERM with 1.5 s requests in flight at every switch; no Docker health check; a TCP service; a 5 s stream; Ctrl-C
and a kill mid-switch; compose's own commands on the project.

HTTP load comes from the client that retries, once, a request whose reused keep-alive connection was closed before any
answer (retry_idle_close: as curl, browsers and Go do); it must lose none. nginx has no runtime API: each switch is a
graceful reload, whose old workers close idle keep-alive connections at once, and a strict client (tests/loadgen.py:
every error counts) loses the request it sends next on one; while a route is pinned, nginx closes each client
connection after its answer, so only the first of a deploy's three reloads finds idle ones. The example's ten deploys
run a strict client beside the retrying one and hold it to fewer than two lost requests per connection per deploy (the
README says one); the ten deploys without a Docker health check turn client keep-alive off for the route
(docker-reroll.proxy-client-keepalive: false) and hold the strict client beside the retrying one to none; elsewhere it
would only add load. None is `serial`: proxy mode has no clock to race, so its claims
must hold on a busy machine too, beside the other tests of the parallel phase. One is `exclusive`: it makes the engine
leave a swarm, which erases the DNS names of every container on engine 20.10."""

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from typing import Dict, List, Optional

import pytest

from docker_reroll.model import parse_compose_config
from docker_reroll.nginx import render_config
from docker_reroll.proxy import plan_routes, routes_of
from dockerfixtures import (
    LOAD_CLIENTS,
    LOAD_RATE,
    ROOT,
    STACKS,
    ComposeProject,
    Run,
    child_pid,
    connection_after_answer,
    docker,
    finish,
    free_port,
    iso_seconds,
    lost_requests,
    machine_lock,
    read_until,
    session_loops,
    stack_url,
    start_reroll,
    started_at,
    versions_after,
)
from loadgen import LoadGenerator, now

pytestmark = pytest.mark.xdist_group("nginx")  # one at a time: scripts/test.sh says why

EXAMPLE = os.path.join(ROOT, "examples", "proxy-nginx")
OVERRIDES = os.path.join(STACKS, "proxy-nginx")
DEPLOYS = 10
STREAM_DEPLOYS = 3  # a 5 s stream each: the switch's races are the ten-deploy tests' to catch


@pytest.fixture(scope="session")
def nginx_images(base_env):
    with machine_lock("proxy-nginx-images"):
        docker("compose", "-p", "rerollngxbuild", "build", "-q", env=base_env, cwd=EXAMPLE, timeout=900)


def generated_config(stack: ComposeProject) -> str:
    """The nginx.conf docker-reroll generates for the project's labels (what `--dry-run` prints)."""
    project = parse_compose_config(stack.compose("config", "--format", "json").stdout)
    return render_config(routes_of(plan_routes(project), "proxy"))


@pytest.fixture
def nginx_stack(base_env, nginx_images, tmp_path):
    """examples/proxy-nginx as a project of its own, with overrides from tests/stacks/proxy-nginx; the proxy runs
    the nginx.conf generated for the resulting labels (the example's own when they are the example's)."""
    made = []

    def make(*overrides: str) -> ComposeProject:
        name = "rn" + uuid.uuid4().hex[:10]
        files = ["compose.yaml", *(os.path.join(OVERRIDES, f"{o}.yaml") for o in overrides)]
        env = {**base_env, "COMPOSE_PROJECT_NAME": name, "PROXY_PORT": str(free_port()),
               "COMPOSE_FILE": ":".join(files)}
        stack = ComposeProject(directory=EXAMPLE, name=name, env=env, service="app")
        config = generated_config(stack)
        with open(os.path.join(EXAMPLE, "nginx.conf")) as handle:
            if config != handle.read():
                (tmp_path / "nginx.conf").write_text(config)
                (tmp_path / "conf.yaml").write_text(
                    f"services:\n  proxy:\n    volumes:\n      - {tmp_path}/nginx.conf:/etc/nginx/nginx.conf:ro\n")
                stack.env["COMPOSE_FILE"] += f":{tmp_path}/conf.yaml"
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.cleanup()


def start(stack: ComposeProject, replicas: int = 1, http: bool = True) -> None:
    stack.compose("up", "-d", "--wait", "--scale", f"app={replicas}")
    deadline = time.monotonic() + 30
    while not answers(stack, http):
        assert time.monotonic() < deadline, "the proxy never answered"
        time.sleep(0.2)


def answers(stack: ComposeProject, http: bool = True) -> Optional[str]:
    """What the proxy answers now: a GET / (http) or a line echoed (tcp); None if nothing."""
    try:
        if http:
            with urllib.request.urlopen(stack_url(stack), timeout=3) as answer:
                return answer.read().decode().strip()
        with socket.create_connection(("127.0.0.1", int(stack.env["PROXY_PORT"])), timeout=3) as conn:
            conn.sendall(b"ping\n")
            return conn.makefile().readline().strip() or None
    except OSError:
        return None


def events(run) -> List[dict]:
    return [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]


def connections(run) -> List[Dict[str, int]]:
    return [e["connections"] for e in events(run) if e["type"] == "connections"]


def warnings(run) -> List[str]:
    return [e["message"] for e in events(run) if e["type"] == "log" and e["level"] in ("warn", "error")]


def proxy_id(stack: ComposeProject) -> str:
    [proxy] = [c for c in stack.containers("proxy") if c.running]
    return proxy.id


def pinned_addresses(stack: ComposeProject) -> List[str]:
    """The addresses nginx is pinned to for the app (none at rest)."""
    text = docker("exec", proxy_id(stack), "sh", "-c", "cat /etc/nginx/docker-reroll/reroll_app.upstream "
                  "2>/dev/null || true").stdout
    return [line.split()[1].rstrip(";") for line in text.splitlines() if line.strip().startswith("server ")]


def running_addresses(stack: ComposeProject) -> List[str]:
    return [f"{address}:8080" for c in stack.containers() if c.running for address in c.addresses.values()]


class HttpLoad:
    """The retrying client against the proxy, 8 clients; with `strict`, the strict one beside it, 8 more, whose
    losses are printed (and bounded by the example's test)."""

    def __init__(self, stack: ComposeProject, clients: int = LOAD_CLIENTS, strict: bool = False,
                 rate: float = LOAD_RATE) -> None:
        url = stack_url(stack)
        self.retrying = LoadGenerator(url, clients=clients, max_duration=600, retry_idle_close=True, rate=rate)
        self.strict = LoadGenerator(url, clients=clients, max_duration=600, rate=rate) if strict else None
        self.clients = {"retrying": self.retrying, **({"strict": self.strict} if self.strict else {})}

    def __enter__(self) -> "HttpLoad":
        for client in self.clients.values():
            client.start()
        assert self.retrying.wait_for_requests(50, timeout=30), "no load reached the proxy"
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(1.0)  # what serves after the last deploy
        for name, client in self.clients.items():
            print(f"\n{name} client: {client.stop().summary()}", end="")
        print()

    def assert_retrying_lost_nothing(self, stack: ComposeProject) -> None:
        """The retrying client lost no request; else say when each was lost and what nginx logged (a str message:
        pytest shortens any other kind, and the line that names the cause was cut out of it once)."""
        report = self.retrying.report()
        if report.failed:
            lost = "\n".join(lost_requests(report))
            pytest.fail(f"the retrying client lost {report.failed} request(s): {report.failures}\n{lost}\n"
                        f"{nginx_errors(stack)}", pytrace=False)

    def failed(self) -> "tuple[int, int, int]":
        """So far: failed (retrying), retried (retrying), failed (strict; 0 without it)."""
        retrying = self.retrying.report()
        return retrying.failed, retrying.retried, self.strict.report().failed if self.strict else 0


class Deploy:
    def __init__(self, run, counts: List[int], new: List) -> None:
        self.run, self.counts, self.new = run, counts, new  # the new containers, as they serve after it
        self.started = {c.id: started_at(c.id) for c in new}  # when the engine started each


def nginx_errors(stack: ComposeProject) -> str:
    """What nginx logged at warn level and above (failed connects, names it could not resolve), then its last
    notices (its reloads), which would otherwise crowd the errors out."""
    logged = stack.compose("logs", "--no-log-prefix", "--timestamps", "proxy", check=False).stdout.splitlines()
    levels = ("emerg", "alert", "crit", "error", "warn")
    errors = [line for line in logged if any(f"[{level}]" in line for level in levels)]
    notices = [line for line in logged if "[notice]" in line]
    return ("nginx's errors and warnings:\n" + "\n".join(errors[-40:]) + "\nits last notices:\n"
            + "\n".join(notices[-15:]))


def deploy_series(stack: ComposeProject, load: HttpLoad, *args: str, count: int = DEPLOYS) -> List[Deploy]:
    """`count` deploys of a new APP_VERSION each, with JSON progress: each succeeds and its version serves."""
    rows = []
    for number in range(count):
        version = f"v{number + 2}"
        was = load.failed()
        run = stack.reroll("--progress", "json", *args, "app", extra_env={"APP_VERSION": version})
        assert run.returncode == 0, run.stderr[-3000:]
        ended = now()
        if not load.retrying.wait_for(lambda report, ended=ended: len(versions_after(report, ended)) > 0, timeout=10):
            pytest.fail(f"nothing answered through the proxy in the 10 s after deploy {number + 1} ended: "
                        f"{load.retrying.report().summary()}\n{nginx_errors(stack)}")
        assert versions_after(load.retrying.report(), ended) == {version}
        counts = [after - before for after, before in zip(load.failed(), was)]
        strict = f", strict client failed {counts[2]}" if load.strict else ""
        print(f"deploy {number + 1}: {run.seconds:.2f}s, retrying client failed {counts[0]} (retried {counts[1]})"
              f"{strict}; connections to the old ones: {connections(run)}")
        rows.append(Deploy(run, counts, [c for c in stack.containers() if c.running]))
    return rows


def assert_drained_not_cut(run) -> None:
    seen = connections(run)
    assert seen and not any(seen[-1].values()), f"the drain ended with connections left: {seen}"
    assert not [w for w in warnings(run) if "cut" in w], warnings(run)


def test_the_committed_nginx_conf_is_the_one_generated_for_the_examples_labels(nginx_stack):
    stack = nginx_stack()
    with open(os.path.join(EXAMPLE, "nginx.conf")) as handle:
        assert handle.read() == generated_config(stack)
    assert "COMPOSE_FILE" in stack.env and "conf.yaml" not in stack.env["COMPOSE_FILE"]


def test_the_example_deploys_ten_times_under_load_and_the_retrying_client_loses_nothing(nginx_stack):
    stack = nginx_stack()
    start(stack)
    assert connection_after_answer(stack) == "kept", "client keep-alive, by default"
    dry = stack.reroll("--dry-run", "app")
    assert dry.returncode == 0, dry.stderr
    printed = [line.split("| ", 1)[1] if "| " in line else "" for line in dry.stderr.splitlines() if "    |" in line]
    with open(os.path.join(EXAMPLE, "nginx.conf")) as handle:
        assert "\n".join(printed) + "\n" == handle.read(), "the dry run prints the example's nginx.conf"
    with HttpLoad(stack, strict=True) as load:
        rows = deploy_series(stack, load)
    for deploy in rows:
        assert_drained_not_cut(deploy.run)
        # Only the first reload closes idle connections: while pinned, each answer closes its connection. (A
        # connection that an old worker accepted just before it was told to stop may cost a second request: the
        # bound is under two per connection, where three reloads that each closed idle connections cost three.)
        assert deploy.counts[2] < 2 * LOAD_CLIENTS, f"the strict client lost {deploy.counts[2]} requests in a " \
            f"deploy with {LOAD_CLIENTS} connections: later reloads closed idle connections too"
    load.assert_retrying_lost_nothing(stack)
    assert pinned_addresses(stack) == [], "at rest after every deploy"
    assert session_loops(stack) == [], "each deploy ended its session with nginx"


def test_an_app_that_exits_at_once_on_sigterm_loses_no_request_in_flight(nginx_stack):
    """1.5 s requests: at every switch the old container has requests in flight; it is stopped (and dies at once)
    only when nginx holds no connection to it. Each of 16 clients starts one every 1.6 s, their starts spread over
    those 1.6 s, so that about 15 are in flight at any moment (8 clients sending back to back started within 80 ms
    of each other and stayed in step: once all 8 ended between the switch and the drain's first count)."""
    stack = nginx_stack("abrupt")
    start(stack)
    with HttpLoad(stack, clients=16, rate=10) as load:
        rows = deploy_series(stack, load)
    for deploy in rows:
        seen = connections(deploy.run)
        assert any(seen[0].values()), f"no request in flight at the switch: {seen}"
        assert_drained_not_cut(deploy.run)
    load.assert_retrying_lost_nothing(stack)


def test_without_a_docker_health_check_the_proxys_own_check_decides_and_no_clock(nginx_stack):
    """/health says "starting" for 2 s after a container starts (GET / is served all along): no request reaches a
    new container before that, and the deploy does not wait --wait's 10 s. The route's client keep-alive is off
    (docker-reroll.proxy-client-keepalive: false), so the strict client beside the retrying one loses nothing
    either: no reload finds an idle connection to close, and no request needed a retry."""
    stack = nginx_stack("probe", "closing")
    start(stack)
    assert connection_after_answer(stack) == "closed", "at rest"
    with HttpLoad(stack, strict=True) as load:
        rows = deploy_series(stack, load)
    load.assert_retrying_lost_nothing(stack)
    assert load.failed()[1:] == (0, 0), "retried (retrying client), failed (strict client)"
    assert load.strict and load.strict.report().total > 100 * DEPLOYS, load.strict.report().summary()
    assert connection_after_answer(stack) == "closed", "at rest after the deploys"
    for deploy in rows:
        assert_drained_not_cut(deploy.run)
        [new] = deploy.new
        started = deploy.started[new.id]
        said = {e["message"]: iso_seconds(e["time"]) for e in events(deploy.run) if e["type"] == "log"}
        assert not [m for m in said if "no health check" in m], "no --wait"
        passed = said[f"the proxy's check passes for {new.name}"]
        assert passed - started < 8, f"the proxy's check passed {passed - started:.2f}s after the start: a clock?"
        window = load.retrying.report().window(host=new.id[:12])
        assert window is not None, f"{new.name} answered no request"
        first = window.first
        assert first >= started + 2.0, f"{new.name} served {first - started:.2f}s after its start"


class TcpLoad:
    """Clients of the line-echo service through the proxy: each opens a connection, sends `lines` lines `gap`
    seconds apart, checks each echo ("<version> <hostname> <line>"), closes, and starts over. A connection that
    does not get every echo is a failure."""

    def __init__(self, port: int, clients: int = 4, lines: int = 5, gap: float = 0.2) -> None:
        self.port, self.lines, self.gap = port, lines, gap
        self.stop_ = threading.Event()
        self.done: List[tuple] = []  # (started, ended, error or None, versions seen)
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> "TcpLoad":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_.set()
        for thread in self.threads:
            thread.join(10)
        print(f"\ntcp clients: {len(self.done)} connections, {len(self.failed())} failed: {self.failed()[:5]}")

    def failed(self) -> List[tuple]:
        return [d for d in list(self.done) if d[2] is not None]

    def versions_since(self, moment: float) -> set:
        return {v for d in list(self.done) if d[0] > moment and d[2] is None for v in d[3]}

    def _client(self, index: int) -> None:
        while not self.stop_.is_set():
            started, versions, error = now(), set(), None
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
                    replies = conn.makefile("rb")
                    for number in range(self.lines):
                        line = f"client {index} line {number}"
                        conn.sendall(line.encode() + b"\n")
                        words = replies.readline().decode().split()
                        if words[2:] != line.split():
                            raise ConnectionError(f"echo {' '.join(words)!r} for {line!r}")
                        versions.add(words[0])
                        time.sleep(self.gap)
            except (OSError, IndexError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            self.done.append((started, now(), error, versions))


def hold(port: int, gap: float = 0.2) -> dict:
    """One connection kept open, a line every `gap` seconds, until the proxy or the service ends it."""
    held: dict = {"answers": 0, "ended": None, "why": None}

    def run() -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                replies = conn.makefile("rb")
                while True:
                    conn.sendall(b"still here\n")
                    if not replies.readline():
                        held["why"] = "closed"
                        break
                    held["answers"] += 1
                    time.sleep(gap)
        except OSError as exc:
            held["why"] = type(exc).__name__
        held["ended"] = now()

    threading.Thread(target=run, daemon=True).start()
    return held


def test_a_tcp_service_switches_ten_times_without_cutting_a_connection(nginx_stack):
    """Connections of 2 s each: every one open at a switch ends on the old container, within the drain timeout.
    Most switches must have found connections open (on a busy machine the first count can come late enough for a
    switch to find none), or the test proved nothing."""
    stack = nginx_stack("tcp")
    start(stack, http=False)
    port = int(stack.env["PROXY_PORT"])
    held_at_switch = 0
    with TcpLoad(port, lines=10) as load:
        time.sleep(1)
        for number in range(DEPLOYS):
            version = f"v{number + 2}"
            run = stack.reroll("--progress", "json", "app", extra_env={"APP_VERSION": version})
            assert run.returncode == 0, run.stderr[-3000:]
            seen = connections(run)
            print(f"deploy {number + 1}: {run.seconds:.2f}s; connections to the old one: {seen}")
            held_at_switch += any(seen[0].values())
            assert_drained_not_cut(run)
            ended, deadline = now(), time.monotonic() + 15
            while not load.versions_since(ended) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert load.versions_since(ended) == {version}
    assert load.done and not load.failed(), load.failed()[:10]
    assert held_at_switch >= DEPLOYS - 2, f"only {held_at_switch} of {DEPLOYS} switches found connections open"


def test_a_tcp_connection_still_open_at_the_drain_timeout_is_cut_and_counted(nginx_stack):
    stack = nginx_stack("tcp")
    start(stack, http=False)
    port = int(stack.env["PROXY_PORT"])
    [old] = stack.containers()
    with TcpLoad(port) as load:
        held = hold(port)
        time.sleep(1)
        run = stack.reroll("--progress", "json", "--drain-timeout", "3", "app", extra_env={"APP_VERSION": "v2"})
        assert run.returncode == 0, run.stderr[-3000:]
        time.sleep(1)
    assert not load.failed(), "the connections that ended within the timeout were not cut"
    assert connections(run)[-1] == {old.name: 1}
    assert [w for w in warnings(run) if w.startswith("1 connection(s) still open after 3s: cut")] == \
        [f"1 connection(s) still open after 3s: cut ({old.name} 1)"]
    assert held["why"] == "closed" and held["answers"] > 10
    [summary] = [e for e in events(run) if e["type"] == "summary"]
    assert summary["services"][0]["cut_connections"] == {old.name: 1}
    switched = next(e for e in events(run) if e["type"] == "log" and "keep their connections" in e["message"])
    assert held["ended"] - iso_seconds(switched["time"]) >= 3.0, "not before the timeout"


def stream(url: str, result: dict) -> None:
    """GET /stream?seconds=5: ten lines 0.5 s apart; `result` gets them, or the error."""
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    try:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.request("GET", "/stream?seconds=5")
        answer = conn.getresponse()
        result["status"] = answer.status
        result["lines"] = answer.read().decode().splitlines()
        conn.close()
    except Exception as exc:  # noqa: BLE001 - what went wrong is the result
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["ended"] = now()


def test_a_five_second_stream_across_each_switch_is_not_cut(nginx_stack):
    """The stream starts once nginx is pinned to the old container, before the new one is ready: it is switched
    while the stream runs, and the old container is stopped only after the stream's end."""
    stack = nginx_stack()
    start(stack)
    with HttpLoad(stack) as load:
        for number in range(STREAM_DEPLOYS):
            deploy = start_reroll(stack, "--progress", "json", "app", extra_env={"APP_VERSION": f"v{number + 2}"})
            seen = read_until(deploy, STARTING)
            result: dict = {"started": now()}
            thread = threading.Thread(target=stream, args=(stack_url(stack), result), daemon=True)
            thread.start()
            seen += finish(deploy)
            thread.join(15)
            assert deploy.returncode == 0, seen[-3000:]
            run = Run(deploy.returncode, "", seen, 0.0)
            switched = iso_seconds(next(e["time"] for e in events(run) if "keep their connections" in
                                        e.get("message", "")))
            stopped = iso_seconds(next(e["time"] for e in events(run) if e.get("message", "").startswith(
                "stopping")))
            print(f"deploy {number + 1}: stream from -{switched - result['started']:.2f}s to "
                  f"+{result['ended'] - switched:.2f}s of the switch, old container stopped at "
                  f"+{stopped - switched:.2f}s; connections to it: {connections(run)}")
            assert result["started"] < switched < result["ended"] - 0.5, "the stream ran across the switch"
            assert stopped > result["ended"] - 0.1, "the old container stopped after the stream ended"
            assert_drained_not_cut(run)
            assert "error" not in result and result["status"] == 200, result
            assert [line.split()[2] for line in result["lines"]] == [str(i) for i in range(10)], result["lines"]
            assert {line.split()[0] for line in result["lines"]} == {f"v{number + 1}"}, "all from the old one"
    load.assert_retrying_lost_nothing(stack)


STARTING = "scaling app from"  # nginx is pinned to the old containers, the new ones start


def in_background(stack: ComposeProject, version: str, until: str) -> "tuple[subprocess.Popen, str, dict]":
    """A deploy in the background, read until the new containers start; then a 5 s stream through the proxy (to
    the old container), which keeps the drain going; then read until `until`."""
    deploy = start_reroll(stack, "--progress", "json", "app", extra_env={"APP_VERSION": version})
    seen = read_until(deploy, STARTING)
    result: dict = {"started": now()}
    threading.Thread(target=stream, args=(stack_url(stack), result), daemon=True).start()
    return deploy, seen + (read_until(deploy, until) if until != STARTING else ""), result


def assert_routes_to_serving_containers(stack: ComposeProject) -> None:
    running = running_addresses(stack)
    assert set(pinned_addresses(stack)) <= set(running), (pinned_addresses(stack), running)
    assert answers(stack), "the proxy answers"


@pytest.mark.parametrize("moment", [STARTING, "(--drain-timeout) for the proxy's connections"])
def test_ctrl_c_during_a_deploy_leaves_nginx_routing_to_containers_that_serve(nginx_stack, moment):
    """Ctrl-C (SIGINT to the deploy's process group, as a terminal sends it) while nginx is pinned to the old
    containers and the new one starts, or while it drains the old one after the switch."""
    stack = nginx_stack()
    start(stack)
    with HttpLoad(stack) as load:
        deploy, seen, result = in_background(stack, "v2", moment)
        os.killpg(deploy.pid, signal.SIGINT)
        seen += finish(deploy)
        time.sleep(6)  # the stream's end, and requests after the deploy
        print(f"exit {deploy.returncode}; stream: {result.get('error') or len(result.get('lines', []))} lines")
        assert_routes_to_serving_containers(stack)
    load.assert_retrying_lost_nothing(stack)
    assert "error" not in result and len(result["lines"]) == 10, result


def test_a_deploy_killed_after_the_switch_is_finished_by_the_next_run(nginx_stack):
    stack = nginx_stack()
    start(stack)
    [old] = stack.containers()
    with HttpLoad(stack) as load:
        # said once nginx took the switch (its reload done): "... keep their connections" comes before the reload
        deploy, _, result = in_background(stack, "v2", "for the proxy's connections to")
        os.kill(child_pid(deploy.pid), signal.SIGKILL)  # the plugin, mid-drain: no clean-up of any kind
        deploy.wait(30)
        running = [c for c in stack.containers() if c.running]
        assert len(running) == 2, "old and new both left"
        [new] = [c for c in running if c.id != old.id]
        assert pinned_addresses(stack) == [f"{address}:8080" for address in new.addresses.values()]
        run = stack.reroll("--progress", "json", "app", extra_env={"APP_VERSION": "v2"})
        assert run.returncode == 0, run.stderr[-3000:]
        [serving] = [c for c in stack.containers() if c.running]  # the run replaces both: neither is trusted
        assert serving.id != old.id
        assert pinned_addresses(stack) == [], "at rest"
        time.sleep(1)
    load.assert_retrying_lost_nothing(stack)
    assert load.retrying.report().last_version == "v2"
    assert "error" not in result and len(result["lines"]) == 10, result


def hosts_answering(stack: ComposeProject, expected: int, timeout: float = 15) -> set:
    """The app containers that answer through the proxy (new connections), once `expected` of them do."""
    seen: set = set()
    deadline = time.monotonic() + timeout
    while len(seen) < expected and time.monotonic() < deadline:
        answer = answers(stack)
        if answer:
            seen.add(answer.split()[1])
        time.sleep(0.05)
    return seen


def test_composes_own_commands_keep_routing_without_docker_reroll(nginx_stack):
    """After a deploy: a scale change, a restart and a recreation of the proxy, down and up: nginx follows the
    service through Docker's DNS, compose sees no orphans and removes its network."""
    stack = nginx_stack()
    start(stack)
    v2 = {"APP_VERSION": "v2"}
    assert stack.reroll("app", extra_env=v2).returncode == 0
    said = stack.compose("up", "-d", "--wait", extra_env=v2).stderr
    said += stack.compose("up", "-d", "--wait", "--scale", "app=3", extra_env=v2).stderr
    assert hosts_answering(stack, 3) == {c.id[:12] for c in stack.containers() if c.running}
    docker("restart", proxy_id(stack))
    assert len(hosts_answering(stack, 3)) == 3, "after a restart of the proxy"
    said += stack.compose("up", "-d", "--wait", "--force-recreate", "--no-deps", "proxy", extra_env=v2).stderr
    assert len(hosts_answering(stack, 3)) == 3, "after a recreation of the proxy"
    said += stack.compose("down", extra_env=v2).stderr
    assert not docker("network", "ls", "-q", "--filter", f"name={stack.name}_").stdout.strip()
    said += stack.compose("up", "-d", "--wait", extra_env=v2).stderr
    assert len(hosts_answering(stack, 1)) == 1 and answers(stack).startswith("v2 ")
    assert "orphan" not in said.lower(), said


def test_the_example_as_outside_scripts_run_it_deploys_a_new_image_with_no_option(nginx_stack, tmp_path):
    """`docker compose -p NAME up -d`, then `APP_IMAGE=<new image> docker reroll -p NAME app`: nothing else."""
    stack = nginx_stack()
    image = f"reroll-proxy-example-app:other-{uuid.uuid4().hex[:8]}"
    (tmp_path / "Dockerfile").write_text("FROM reroll-proxy-example-app:latest\nLABEL purpose=another-image\n")
    docker("build", "-q", "-t", image, str(tmp_path))
    env = {k: v for k, v in stack.env.items() if k not in ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME")}
    try:
        subprocess.run(["docker", "compose", "-p", stack.name, "up", "-d"], cwd=EXAMPLE, env=env, check=True,
                       capture_output=True)
        deadline = time.monotonic() + 30
        while not answers(stack):
            assert time.monotonic() < deadline, "the proxy never answered"
            time.sleep(0.2)
        with HttpLoad(stack) as load:
            done = subprocess.run(["docker", "reroll", "-p", stack.name, "app"], cwd=EXAMPLE,
                                  env={**env, "APP_IMAGE": image}, capture_output=True, text=True, timeout=180)
            print(done.stderr)
            assert done.returncode == 0, done.stderr
            assert "proxy mode: proxy (nginx) routes app" in done.stderr
        [serving] = [c for c in stack.containers() if c.running]
        assert stack.image_of(serving) == image
        load.assert_retrying_lost_nothing(stack)
        assert load.retrying.report().last_host == serving.id[:12]
    finally:
        stack.cleanup()
        docker("image", "rm", image, check=False)


def test_a_proxy_whose_nginx_conf_was_not_made_for_the_route_is_refused_before_any_change(nginx_stack, tmp_path):
    stack = nginx_stack()
    with open(os.path.join(EXAMPLE, "nginx.conf")) as handle:
        pin = "            include /etc/nginx/docker-reroll/reroll_app.pin*;\n"
        own = handle.read()
        assert pin in own
        (tmp_path / "own.conf").write_text(own.replace(pin, ""))  # it routes, it cannot be pinned
    (tmp_path / "own.yaml").write_text(
        f"services:\n  proxy:\n    volumes:\n      - {tmp_path}/own.conf:/etc/nginx/nginx.conf:ro\n")
    stack.env["COMPOSE_FILE"] += f":{tmp_path}/own.yaml"
    start(stack)
    before = stack.containers()
    run = stack.reroll("app", extra_env={"APP_VERSION": "v2"})
    assert run.returncode == 3, run.stderr
    assert ("its configuration /etc/nginx/nginx.conf was not made for proxy mode's route of app: it lacks "
            "'include /etc/nginx/docker-reroll/reroll_app.pin*;'") in run.stderr
    assert [c.id for c in stack.containers()] == [c.id for c in before]
    dry = stack.reroll("--dry-run", "app", extra_env={"APP_VERSION": "v2"})
    assert dry.returncode == 3 and "refused: proxy mode: its configuration" in dry.stderr


def fails_for(stack: ComposeProject, seconds: float, within: float) -> bool:
    """Whether the proxy answers nothing for `seconds` on end, within `within` seconds."""
    deadline, failing_since = time.monotonic() + within, None
    while time.monotonic() < deadline:
        if answers(stack) is None:
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since >= seconds:
                return True
        else:
            failing_since = None
        time.sleep(0.1)
    return False


@pytest.mark.exclusive  # it makes the engine join a swarm and leave it, which no test beside it would survive
def test_after_the_engine_forgot_the_apps_dns_name_a_deploy_routes_again(nginx_stack):
    """Leaving a swarm makes engine 20.10 forget every container's DNS name: nginx at rest then answers 502 (it
    finds the app by name). A deploy mends it: it pins the old container by its address, and goes back to DNS only
    once DNS gives the new one."""
    stack = nginx_stack()
    start(stack)
    assert docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() == "inactive", \
        "this test makes a swarm of its own and leaves it"
    docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    docker("swarm", "leave", "--force")
    forgot = fails_for(stack, seconds=2.0, within=10.0)  # longer than nginx keeps an answer (1 s)
    print(f"nginx at rest after the swarm left: {'no answer' if forgot else 'still answers'}")
    if docker("version", "--format", "{{.Server.Version}}").stdout.startswith("20.10."):
        assert forgot, "engine 20.10 forgets the names when it leaves a swarm: nothing to mend here"
    run = stack.reroll("--progress", "json", "app", extra_env={"APP_VERSION": "v2"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert not warnings(run), warnings(run)  # the pins left: DNS gives the new container
    said = []
    for _ in range(20):
        said.append(answers(stack))
        time.sleep(0.1)
    assert all(a is not None and a.startswith("v2 ") for a in said), (said, nginx_errors(stack))

"""Proxy mode's nginx driver without an engine: the nginx.conf it generates, the pin files, what it reads of a running
proxy (its configuration, /proc/net/tcp as recorded from a real one), the docker calls a switch makes, and the
backend check it runs inside the proxy's container (run here with this machine's bash and busybox). That nginx
takes all of it is proven against the real engine (tests/engine/test_proxy_nginx.py)."""

import dataclasses
import io
import os
import shlex
import shutil
import subprocess
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from docker_reroll import nginx
from docker_reroll.engine import Docker
from docker_reroll.errors import DeployFailed
from docker_reroll.nginx import (
    COMMAND_SESSION,
    KEEPALIVE_NOTE,
    NO_KEEPALIVE_NOTE,
    PROBE_SCRIPT,
    RELOAD_SCRIPT,
    NginxDriver,
    missing_lines,
    parse_proc_net_tcp,
    pin_files,
    render_config,
    render_pins,
    session_line,
)
from docker_reroll.processes import Result, Session
from docker_reroll.proxy import Backend, Route
from docker_reroll.proxy_driver import SESSION_END
from fakeengine import FakeRunner

DATA = os.path.join(os.path.dirname(__file__), "data")
CONF = "/etc/nginx/nginx.conf"
APP = Route("app", "proxy", "nginx", 8080, 8080, "http", config_path=CONF)
API = Route("api", "proxy", "nginx", 8000, 8080, "http", hosts=("api.example", "api2.example"), config_path=CONF)
ECHO = Route("echo", "proxy", "nginx", 9000, 9001, "tcp", config_path=CONF)
DOCS = Route("my-docs", "proxy", "nginx", 80, 8081, "http", hosts=("docs.example",), config_path=CONF)
OLD, NEW = Backend("c1", "p-app-1", "172.20.0.2", 8080), Backend("c2", "p-app-2", "172.20.0.5", 8080)


def section(text: str, start: str) -> str:
    """From the line `start` to the end of its block."""
    lines = text.splitlines()
    first = lines.index(start)
    depth, out = 0, []
    for line in lines[first:]:
        out.append(line)
        depth += line.count("{") - line.count("}")
        if depth == 0 and "}" in line:
            return "\n".join(out)
    raise AssertionError(f"{start!r} never closes")


def test_at_rest_each_route_goes_to_its_service_through_dockers_dns_and_includes_its_pin_files():
    config = render_config([APP, ECHO])
    assert config == render_config([ECHO, APP]), "the same routes, the same text, in any order"
    http, stream = section(config, "http {"), section(config, "stream {")
    for block in (http, stream):
        assert "    resolver 127.0.0.11 valid=1s ipv6=off;" in block.splitlines()
    assert "        location / {\n" \
           '            set $reroll_app "app:8080";\n' \
           "            include /etc/nginx/docker-reroll/reroll_app.pin*;\n" \
           "            proxy_pass http://$reroll_app;" in http
    assert "    include /etc/nginx/docker-reroll/reroll_app.upstream*;\n    server {\n        listen 8080 " \
           "default_server;" in http
    assert "    include /etc/nginx/docker-reroll/reroll_echo.upstream*;\n    server {\n        listen 9001;\n" \
           '        set $reroll_echo "echo:9000";\n' \
           "        include /etc/nginx/docker-reroll/reroll_echo.pin*;\n" \
           "        proxy_pass $reroll_echo;" in stream
    assert "reroll_echo" not in http and "reroll_app" not in stream
    for line in ("proxy_next_upstream      error timeout;", "proxy_read_timeout       1h;",
                 "proxy_buffering          off;"):
        assert f"    {line}" in http.splitlines()
    assert not [line for line in http.splitlines() if line.split()[:1] == ["keepalive"]], "no upstream keepalive"
    assert config.startswith("#") and "\nuser  nginx;\n" in config and "\nevents {\n" in config
    assert "stream {" not in render_config([APP]) and "http {" not in render_config([ECHO])


def test_routes_sharing_a_port_are_told_apart_by_host_name_and_other_names_get_404_or_the_route_without_names():
    config = render_config([APP, API, DOCS])
    api = config[config.index("# service api"):config.index("# service app")]
    assert "listen 8080;" in api and "server_name api.example api2.example;" in api
    app = config[config.index("# service app"):config.index("# service my-docs")]
    assert "listen 8080 default_server;" in app and "server_name" not in app
    catch_all = config[config.index("# other host names on port 8081"):config.index("# service api")]
    assert "listen 8081 default_server;" in catch_all and "return 404;" in catch_all
    assert "other host names on port 8080" not in config, "app takes every other name on 8080"
    assert 'set $reroll_my_docs "my-docs:80";' in config, "no '-' in an nginx variable"


def test_pin_files_send_the_route_to_exact_addresses_and_empty_ones_are_at_rest():
    upstream, pin = pin_files(APP)
    pins = render_pins(APP, [OLD, NEW])
    assert set(pins) == {upstream, pin} == {"reroll_app.upstream", "reroll_app.pin"}
    assert "upstream reroll_app_pinned {\n    server 172.20.0.2:8080;\n    server 172.20.0.5:8080;\n}" in pins[upstream]
    assert pins[pin].splitlines()[1:] == ["set $reroll_app reroll_app_pinned;",
                                          f"keepalive_timeout 0;  {KEEPALIVE_NOTE}"]
    tcp = render_pins(ECHO, [OLD])[pin_files(ECHO)[1]]
    assert tcp.splitlines()[1:] == ["set $reroll_echo reroll_echo_pinned;"], "keepalive_timeout is no stream setting"
    nobody = render_pins(APP, [])
    assert "server 127.0.0.1:1 down;" in nobody[upstream], "an upstream without servers is an nginx error"


def test_without_client_keepalive_the_routes_server_closes_each_connection_at_rest_too():
    closing = dataclasses.replace(APP, client_keepalive=False)
    config = render_config([closing, API])
    server = config[config.index("# service app"):]
    assert f"        keepalive_timeout 0;  {NO_KEEPALIVE_NOTE}" in server.splitlines()
    assert "location / {" in server.split("keepalive_timeout 0;")[1], "in the server, beside the pin's in location"
    assert config.count("keepalive_timeout 0;") == 1, "only the route whose label says so"
    assert missing_lines(config, closing) == []
    assert missing_lines(render_config([APP]), closing) == ["keepalive_timeout 0;"]


def test_the_check_names_what_a_configuration_lacks_for_a_route():
    config = render_config([APP, ECHO])
    assert missing_lines(config, APP) == [] and missing_lines(config, ECHO) == []
    assert missing_lines(config, API) == ["include /etc/nginx/docker-reroll/reroll_api.upstream*;",
                                          'set $reroll_api "api:8000";',
                                          "include /etc/nginx/docker-reroll/reroll_api.pin*;",
                                          "proxy_pass http://$reroll_api;"]
    edited = config.replace("resolver 127.0.0.11 valid=1s ipv6=off;", "resolver 127.0.0.11 valid=5s;  # slower")
    edited = edited.replace("listen 8080 default_server;", "listen   8080;")
    assert missing_lines(edited, APP) == [], "other resolver settings, spacing and comments are the user's"
    without = config.replace("    resolver 127.0.0.11 valid=1s ipv6=off;\n", "    # resolver 127.0.0.11;\n")
    assert missing_lines(without, APP) == ["resolver 127.0.0.11 valid=1s ipv6=off;"]
    moved = config.replace('"app:8080"', '"app:80"')
    assert missing_lines(moved, APP) == ['set $reroll_app "app:8080";']


def test_connections_are_the_established_rows_to_a_backends_address_and_port():
    # Recorded in a proxy of examples/proxy-nginx with 5 requests of 1.5 s in flight to 172.20.0.2:8080: nginx's
    # own listening sockets, Docker's DNS, and the clients' connections (from the gateway) are there too.
    with open(os.path.join(DATA, "nginx_proc_net_tcp.txt")) as handle:
        found = parse_proc_net_tcp(handle.read())
    assert found[("172.20.0.2", 8080)] == 5
    assert found[("172.20.0.3", 8080)] == 0 and found[("0.0.0.0", 0)] == 0, "listening sockets are not connections"
    tcp6 = ("  sl  local_address                         remote_address                        st tx_queue\n"
            "   0: 0000000000000000FFFF00000300140A:1F90 0000000000000000FFFF00000200140A:A8E4 01 00000000:00000000\n"
            "   1: 0000000000000000FFFF00000300140A:1F90 0000000000000000FFFF00000200140A:A8E6 06 00000000:00000000\n"
            "   2: 00000000000000000000000001000000:0050 B80D0120000000000000000001000000:1F90 01 00000000:00000000\n")
    assert parse_proc_net_tcp(tcp6) == {("10.20.0.2", 0xA8E4): 1, ("2001:db8::1", 8080): 1}, \
        "IPv4-mapped addresses as IPv4; TIME_WAIT (06) is no connection"


def tar_of(name: str, text: str) -> str:
    """What `docker cp CONTAINER:PATH -` prints (the runner decodes it as text)."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return archive.getvalue().decode()


class LineSession:
    """The proxy's session without an engine: each line it is asked is read back into the command it runs (the
    scripts it names put back) and answered by the runner as that command's own exec, so the tests below see the
    same calls either way; None once `ended` (the session is gone)."""

    def __init__(self, docker: "SessionDocker", container_id: str, argv: "list[str]") -> None:
        self.docker, self.container_id = docker, container_id
        assert argv == ["sh", "-c", COMMAND_SESSION, SESSION_END, RELOAD_SCRIPT, PROBE_SCRIPT]
        self.scripts = {"$1": RELOAD_SCRIPT, "$2": PROBE_SCRIPT}

    def ask(self, line: str, timeout: float):
        if self.docker.ended:
            return None
        self.docker.asked.append(line)
        argv = [self.scripts.get(word, word) for word in shlex.split(line)]
        return self.docker.runner.run(["docker", "exec", self.container_id, *argv])

    def close(self) -> None:
        pass


class SessionDocker(Docker):
    def __init__(self, runner: FakeRunner) -> None:
        super().__init__("docker", [], [], {}, runner)
        self.sessions: "list[str]" = []  # the container of each session opened
        self.asked: "list[str]" = []  # every line asked of a session
        self.ended = False

    def exec_session(self, container_id, argv, end):
        assert end == SESSION_END
        self.sessions.append(container_id)
        return LineSession(self, container_id, list(argv))


def driver_with(answer) -> "tuple[NginxDriver, FakeRunner]":
    runner = FakeRunner(answer=answer)
    return NginxDriver(SessionDocker(runner)), runner


def test_the_check_reads_the_running_configuration_with_docker_cp_only():
    config = render_config([APP])
    driver, runner = driver_with(lambda argv: Result(0, tar_of("nginx.conf", config), ""))
    assert driver.check("p1", APP) is None
    assert runner.calls == [["docker", "cp", "-L", "p1:/etc/nginx/nginx.conf", "-"]]
    problem = driver.check("p1", ECHO)
    assert problem is not None and "not made for proxy mode's route of echo" in problem
    assert "'listen 9001;'" in problem and "'proxy_pass $reroll_echo;'" in problem
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        folder = tarfile.TarInfo("nginx.conf")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    driver, _ = driver_with(lambda argv: Result(0, archive.getvalue().decode(), ""))
    assert driver.check("p1", APP) == "cannot read its configuration /etc/nginx/nginx.conf: not a file"
    driver, _ = driver_with(lambda argv: Result(1, "", "Error: No such container:path: p1:/etc/nginx/nginx.conf"))
    assert driver.check("p1", APP) == ("cannot read its configuration /etc/nginx/nginx.conf: Error: No such "
                                       "container:path: p1:/etc/nginx/nginx.conf")


def pins_written(call: "list[str]", stdin: bytes) -> "dict[str, str]":
    with tarfile.open(fileobj=io.BytesIO(stdin)) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}


def dns_answers(*addresses: str):
    """The proxy's container: `getent ahostsv4 app` answers these addresses (as glibc prints them), the rest ""."""
    lines = "".join(f"{a}      {kind}\n" for a in addresses for kind in ("STREAM app", "DGRAM", "RAW"))
    return lambda argv: Result(0 if addresses else 2, lines, "") if "getent" in argv else Result(0, "", "")


def test_a_switch_writes_the_pins_and_reloads_once_per_change_and_rest_empties_them():
    runner = FakeRunner(answer=dns_answers(NEW.address))
    inputs = []
    real_run = runner.run

    def run(argv, **kwargs):
        if "getent" not in argv:
            inputs.append(kwargs.get("input_bytes", b""))
        return real_run(argv, **kwargs)

    runner.run = run
    driver = NginxDriver(SessionDocker(runner))
    driver.route_to("p1", APP, [OLD], [])
    driver.route_to("p1", APP, [OLD], [])  # the same pins: no second reload
    driver.route_to("p1", APP, [NEW], [OLD])
    driver.rest("p1", APP)
    driver.rest("p1", APP)
    verbs = [call[1] for call in runner.calls if "getent" not in call]
    assert verbs == ["cp", "exec", "cp", "exec", "cp", "exec"]
    runner.calls = [call for call in runner.calls if "getent" not in call]
    assert runner.calls[0] == ["docker", "cp", "-", "p1:/etc/nginx"]
    assert runner.calls[1][:5] == ["docker", "exec", "p1", "sh", "-c"]
    assert runner.calls[1][6:] == ["reload", "/etc/nginx/nginx.conf", "200"]
    assert pins_written(runner.calls[0], inputs[0]) == {f"docker-reroll/{k}": v
                                                        for k, v in render_pins(APP, [OLD]).items()}
    assert pins_written(runner.calls[2], inputs[2]) == {f"docker-reroll/{k}": v
                                                        for k, v in render_pins(APP, [NEW]).items()}
    assert pins_written(runner.calls[4], inputs[4]) == {"docker-reroll/reroll_app.upstream": "",
                                                        "docker-reroll/reroll_app.pin": ""}


@pytest.mark.parametrize("dns, why", [((OLD.address, NEW.address), "the removed container still in the answer"),
                                      ((), "no answer")])
def test_the_pins_stay_while_dockers_dns_does_not_answer_with_exactly_what_serves(monkeypatch, dns, why):
    monkeypatch.setattr(nginx, "DNS_WAIT", 0.3)
    driver, runner = driver_with(dns_answers(*dns))
    driver.route_to("p1", APP, [NEW], [OLD])
    said = driver.rest("p1", APP)
    assert said is not None and said.startswith(f"Docker's DNS answered app with {', '.join(dns) or 'nothing'} "
                                                "for 0.3s after the deploy, where 172.20.0.5 serve"), (why, said)
    assert said.endswith("the pins stay until the next deploy (and with them each answer closes its client "
                         "connection)"), "an HTTP route's pin file turns keep-alive off"
    assert [call[1] for call in runner.calls if "getent" not in call] == ["cp", "exec"], "no reload to rest"


def test_addresses_of_the_serving_containers_on_another_network_of_the_proxy_do_not_hold_the_pins():
    driver, runner = driver_with(dns_answers(NEW.address, "10.9.0.5"))
    driver.route_to("p1", APP, [NEW], [OLD])
    assert driver.rest("p1", APP) is None
    assert [call[1] for call in runner.calls if "getent" not in call] == ["cp", "exec", "cp", "exec"]


def test_dns_must_answer_right_for_a_while_not_once_before_the_pins_go(monkeypatch):
    """An answer right once, then with the container that left: the pins stay until it is right for DNS_STABLE."""
    monkeypatch.setattr(nginx, "DNS_STABLE", 0.3)
    monkeypatch.setattr(nginx, "DNS_POLL_SECONDS", 0.05)
    answers = [dns_answers(NEW.address), dns_answers(OLD.address, NEW.address)]
    asked = []

    def answer(argv):
        if "getent" in argv:
            asked.append(time.monotonic())
        return answers[1 if len(asked) == 2 else 0](argv)

    driver, runner = driver_with(answer)
    driver.route_to("p1", APP, [NEW], [OLD])
    assert driver.rest("p1", APP) is None
    assert asked[-1] - asked[2] >= 0.3, "right for DNS_STABLE from the answer after the wrong one"
    assert [call[1] for call in runner.calls if "getent" not in call] == ["cp", "exec", "cp", "exec"]


def test_an_image_without_getent_goes_back_to_dns_at_once():
    driver, runner = driver_with(lambda argv: Result(127, "", "getent: not found") if "getent" in argv
                                 else Result(0, "", ""))
    driver.route_to("p1", APP, [NEW], [OLD])
    assert driver.rest("p1", APP) is None
    assert [call[1] for call in runner.calls if "getent" not in call] == ["cp", "exec", "cp", "exec"]


def test_a_reload_nginx_refuses_fails_the_step_with_nginxs_own_words():
    said = ('nginx: [emerg] host not found in upstream "gone:8080" in /etc/nginx/docker-reroll/reroll_app.upstream:3\n')
    reloads = [Result(1, "", said), Result(0, "", "")]
    driver, runner = driver_with(lambda argv: reloads.pop(0) if argv[1] == "exec" else Result(0, "", ""))
    with pytest.raises(DeployFailed, match=r"^proxy mode: nginx did not take the new routing for app: nginx: "
                                           r"\[emerg\] host not found in upstream \"gone:8080\""):
        driver.route_to("p1", APP, [OLD], [])
    driver.route_to("p1", APP, [OLD], [])
    assert [call[1] for call in runner.calls].count("exec") == 2, "a failed reload is tried again"


def test_ready_and_connections_read_what_ran_in_the_proxys_container():
    with open(os.path.join(DATA, "nginx_proc_net_tcp.txt")) as handle:
        recorded = handle.read()
    answers = {"sh": Result(0, "172.20.0.5:8080\n", ""), "cat": Result(1, recorded, "cat: /proc/net/tcp6: No such "
                                                                                    "file or directory")}
    driver, runner = driver_with(lambda argv: answers[argv[3]])
    assert driver.ready("p1", APP, [OLD, NEW]) == [NEW]
    assert runner.calls[0][-4:] == ["2", "", "172.20.0.2:8080", "172.20.0.5:8080"], "seconds, no path: a connect"
    backend = Backend("c1", "p-app-1", "172.20.0.2", 8080)
    assert driver.connections("p1", APP, [backend, NEW]) == {"p-app-1": 5, "p-app-2": 0}


class Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        code = self.status if self.path == "/health" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def servers():
    """Two local HTTP servers, /health 200 and 503, and a port nothing listens on."""
    made = []
    for status in (200, 503):
        handler = type("H", (Health,), {"status": status})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        made.append(server)
    closed = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    closed.server_close()
    yield [f"127.0.0.1:{s.server_address[1]}" for s in made] + [f"127.0.0.1:{closed.server_address[1]}"]
    for server in made:
        server.shutdown()
        server.server_close()


def probe(shell: "list[str]", path: str, targets: "list[str]", env=None) -> "set[str]":
    result = subprocess.run([*shell, PROBE_SCRIPT, "probe", "2", path, *targets], capture_output=True, text=True,
                            timeout=20, env=env)
    return set(result.stdout.split())


def test_the_backend_check_with_bash_connects_or_wants_a_2xx(servers):
    healthy, failing, closed = servers
    assert probe(["sh", "-c"], "", servers) == {healthy, failing}
    assert probe(["sh", "-c"], "/health", servers) == {healthy}


def test_a_deploys_execs_go_through_one_session_and_a_failed_session_leaves_one_exec_per_call():
    table = Result(0, "  sl  local_address rem_address   st\n", "")
    driver, runner = driver_with(lambda argv: table if argv[3] == "cat" else Result(0, "", ""))
    docker = driver.docker
    assert isinstance(docker, SessionDocker)
    driver.route_to("p1", APP, [OLD], [])
    driver.ready("p1", APP, [NEW])
    driver.connections("p1", APP, [OLD])
    assert docker.sessions == ["p1"] and len(docker.asked) == 3, "one session, each call a line of it"
    assert docker.asked[0] == 'sh -c "$1" reload /etc/nginx/nginx.conf 200'
    assert docker.asked[1] == "sh -c \"$2\" probe 2 '' 172.20.0.5:8080"
    assert docker.asked[2] == "cat /proc/net/tcp /proc/net/tcp6"
    assert [call[1] for call in runner.calls] == ["cp", "exec", "exec", "exec"], "the files still by docker cp"

    docker.ended = True  # the session ended (an engine restart, say): the calls are made all the same
    driver.route_to("p1", APP, [NEW], [OLD])
    driver.connections("p1", APP, [OLD])
    assert len(docker.asked) == 3 and docker.sessions == ["p1"], "no new session"
    assert [call[1] for call in runner.calls[4:]] == ["cp", "exec", "exec"], "one exec per call from then on"
    assert runner.calls[5][3:6] == ["sh", "-c", RELOAD_SCRIPT] and runner.calls[6][3] == "cat"


def test_the_session_runs_each_line_with_its_errors_and_exit_status_and_no_input(servers, tmp_path):
    """The real loop, run here by sh as it runs in the proxy's container: the scripts named by "$1" and "$2"."""
    healthy, failing, closed = servers
    (tmp_path / "tcp").write_text("  sl  local_address\n")
    session = Session(["sh", "-c", COMMAND_SESSION, SESSION_END, RELOAD_SCRIPT, PROBE_SCRIPT], SESSION_END)
    try:
        probed = session.ask(session_line(["sh", "-c", PROBE_SCRIPT, "probe", "2", "/health", *servers]), 20)
        assert probed is not None and probed.returncode == 0 and set(probed.stdout.split()) == {healthy}
        assert session.ask(session_line(["cat"]), 5) == Result(0, "\n", ""), "no input: it does not wait"
        said = session.ask(session_line(["cat", str(tmp_path / "tcp"), str(tmp_path / "tcp6")]), 5)
        assert said is not None and said.returncode == 1 and "local_address" in said.stdout
        assert "tcp6: No such file" in said.stderr, "errors in the answer"
        hostile = ["it's", "$HOME", "a b", "/h; echo no", "$(echo no)", "`echo no`", "*"]  # a label's value, say
        odd = session.ask(session_line(["sh", "-c", 'printf "%s|" "$@"; exit 3', "x", *hostile]), 5)
        words = "|".join(hostile) + "|\n"
        assert odd == Result(3, words, words), "each word as it was, run by nothing"
        assert session.process is not None and session.process.poll() is None, "one process for every line"
    finally:
        session.close()


def reload_in(tmp_path, on_reload: str, tries: int = 40, shell: str = "sh"
              ) -> "tuple[subprocess.CompletedProcess, float]":
    """RELOAD_SCRIPT run here against a /proc of files, as the kernel writes them (a title with no newline at its
    end): an nginx master, two workers, a shell; the `nginx` it calls runs `on_reload` (sh, PROC its /proc)."""
    proc = tmp_path / "proc"
    for pid, title in ((1, "nginx: master process nginx -g daemon off;"), (7, "nginx: worker process"),
                       (8, "nginx: worker process"), (9, "sh")):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(title.encode() + b"\0")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "nginx").write_text(f"#!/bin/sh\nPROC={proc}\n{on_reload}\n")
    (tools / "nginx").chmod(0o755)
    started = time.monotonic()
    result = subprocess.run([shell, "-c", RELOAD_SCRIPT, "reload", CONF, str(tries), str(proc)], capture_output=True,
                            text=True, timeout=20, env={"PATH": f"{tools}:{os.environ['PATH']}"})
    return result, time.monotonic() - started


SHELLS = ["sh"] + (["/bin/busybox"] if os.path.exists("/bin/busybox") else [])  # Debian's dash; Alpine's busybox


def shell_named_sh(tmp_path, shell: str) -> str:
    if shell == "sh":
        return shell
    (tmp_path / "bb").mkdir()
    os.symlink(shell, tmp_path / "bb" / "sh")  # busybox is the tool it is named as
    return str(tmp_path / "bb" / "sh")


@pytest.mark.parametrize("shell", SHELLS)
def test_a_reload_returns_once_the_old_workers_are_gone_or_shutting_down_not_before(tmp_path, shell):
    """nginx's master starts the new workers, then tells the old ones to stop: until then they take connections
    with the old routing, so the drain must not start before."""
    shell_argv = shell_named_sh(tmp_path, shell)
    later = ("(sleep 0.4; printf 'nginx: worker process is shutting down\\0' > $PROC/7/cmdline; rm -r $PROC/8)"
             " >/dev/null 2>&1 &")
    result, seconds = reload_in(tmp_path, later, shell=shell_argv)
    assert result.returncode == 0, result.stderr
    assert seconds >= 0.4, "it waited for the old workers"


@pytest.mark.parametrize("shell", SHELLS)
def test_a_reload_whose_old_workers_stay_fails_and_one_nginx_refuses_fails_with_its_words(tmp_path, shell):
    shell_argv = shell_named_sh(tmp_path, shell)
    result, _ = reload_in(tmp_path, "exit 0", tries=4, shell=shell_argv)
    assert (result.returncode, result.stderr) == (2, "nginx still runs its old workers (7 8) after the reload\n")
    refused, _ = reload_in(tmp_path / "again", "echo 'nginx: [emerg] unknown directive' >&2; exit 1", shell=shell_argv)
    assert (refused.returncode, refused.stderr) == (1, "nginx: [emerg] unknown directive\n")


@pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="no busybox on this machine")
def test_the_backend_check_without_bash_uses_busybox_wget(servers, tmp_path):
    """As in an Alpine image: no bash, busybox's tools (Debian's busybox here: its nc has no -z, Alpine's has)."""
    for tool in ("sh", "timeout", "wget"):
        os.symlink("/bin/busybox", tmp_path / tool)
    healthy, failing, closed = servers
    env = {"PATH": str(tmp_path)}
    assert shutil.which("bash", path=str(tmp_path)) is None
    assert probe([str(tmp_path / "sh"), "-c"], "/health", servers, env) == {healthy}

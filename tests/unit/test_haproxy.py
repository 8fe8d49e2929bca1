"""Proxy mode with HAProxy without a daemon: the configuration made from routes, what a running configuration lacks,
`show stat` as HAProxy 2.6 answered it (recorded in tests/unit/data/haproxy, from the example's proxy during a
switch; the free slots after the fifth left out), and the runtime-API commands the driver sends for each move.
tests/engine/test_proxy_haproxy.py proves the moves against the real proxy."""

import io
import os
import tarfile
from typing import List

import pytest

from docker_reroll.errors import DeployFailed
from docker_reroll.haproxy import API_PORT, HAProxyDriver, Slot, config, file_in_tar, missing, parse_stat
from docker_reroll.processes import Result
from docker_reroll.proxy import Backend, Route
from fakeengine import FakeEngine

DATA = os.path.join(os.path.dirname(__file__), "data", "haproxy")
APP = Route("app", "proxy", "haproxy", 8080, 8080, "http", config_path="/usr/local/etc/haproxy/haproxy.cfg")
OLD = Backend("id1", "p-app-1", "172.21.0.3", 8080)
OLD2 = Backend("id2", "p-app-2", "172.21.0.4", 8080)
NEW = Backend("id3", "p-app-3", "172.21.0.5", 8080)


def recorded(name: str) -> str:
    with open(os.path.join(DATA, f"show-stat-{name}.csv"), encoding="utf-8") as handle:
        return handle.read()


def slots(name: str) -> List[Slot]:
    return parse_stat(recorded(name))


# ------------------------------------------------------------------------------------------------- show stat


def test_serving_slots_count_what_is_in_flight_on_them_and_free_slots_hold_no_address():
    first, second, *free = slots("serving-with-streams")
    assert first == Slot("slot1", "172.21.0.3", checked=True, down=False, drained=False, sessions=2)
    assert (second.address, second.sessions, second.checked) == ("172.21.0.4", 1, True)
    assert free and all(s.address == "" and not s.checked and s.sessions == 0 for s in free)


def test_a_container_just_put_in_a_drained_slot_is_not_checked_until_its_check_passes():
    fresh = {s.address: s for s in slots("fresh-in-drain")}["172.21.0.5"]
    assert not fresh.checked and fresh.down, "DNS gave its address before it listened: its first check failed"
    assert {s.address: s for s in slots("checked-in-drain")}["172.21.0.5"].checked


def test_drained_slots_keep_counting_their_sessions_after_the_switch():
    by_address = {s.address: s for s in slots("switched-draining-streams")}
    assert (by_address["172.21.0.3"].sessions, by_address["172.21.0.4"].sessions) == (2, 1)
    assert by_address["172.21.0.5"].sessions == 0


def test_a_stopped_container_is_down_once_its_checks_failed_and_its_address_leaves_its_slot():
    stopped = {s.address: s for s in slots("old-stopped-up")}
    assert all(stopped[a].drained and not stopped[a].down for a in ("172.20.0.5", "172.20.0.6")), "not yet"
    assert {s.address for s in slots("old-stopped-gone")} == {"172.20.0.3", "172.20.0.4", ""}
    by_address = {s.address: s for s in slots("one-of-two-stopped")}
    assert by_address["172.21.0.4"].down and not by_address["172.21.0.4"].checked
    assert not by_address["172.21.0.3"].down


def test_an_answer_that_is_no_stat_table_is_an_error():
    with pytest.raises(ValueError):
        parse_stat("No such proxy.\n\n")


# ------------------------------------------------------------------------------------------------ configuration


def test_the_configuration_routes_each_service_by_docker_dns_with_checks_and_the_runtime_api():
    text = config([APP])
    assert f"stats socket ipv4@127.0.0.1:{API_PORT} level admin" in text
    assert "frontend port_8080\n    mode http\n    bind :8080\n" in text
    assert "option idle-close-on-response" in text and "default_backend reroll_app" in text
    assert "server-template slot 1-64 app:8080" in text and "init-addr none" in text
    assert "option http-server-close" in text and "redispatch" not in text
    assert "httpchk" not in text, "no health path: a connect"
    assert missing(text, APP) is None


def test_services_sharing_a_port_are_told_apart_by_host_and_a_tcp_route_has_a_frontend_of_its_own():
    api = Route("api", "proxy", "haproxy", 8081, 8080, "http", ("api.example.com", "api.example.org"), "/health")
    echo = Route("echo", "proxy", "haproxy", 9000, 9000, "tcp")
    text = config([echo, api, APP])
    assert text == config([APP, api, echo]), "the same routes, the same text"
    port_8080 = section(text, "frontend port_8080")
    assert "use_backend reroll_api if { req.hdr(host),field(1,:) -i api.example.com api.example.org }" in port_8080
    assert port_8080.strip().endswith("default_backend reroll_app")
    api_backend = section(text, "backend reroll_api")
    assert "option httpchk GET /health" in api_backend and "server-template slot 1-64 api:8081" in api_backend
    echo_backend = section(text, "backend reroll_echo")
    assert "mode tcp" in echo_backend and "http" not in echo_backend
    assert section(text, "frontend port_9000").split("\n") == [
        "    mode tcp", "    bind :9000", "    option tcplog", "    default_backend reroll_echo"]


def section(text: str, header: str) -> str:
    """The lines of one section of a configuration, after its header line."""
    return text.split(f"\n{header}\n")[1].split("\n\n")[0]


@pytest.mark.parametrize("change, problem", [
    (lambda t: t.replace(f"stats socket ipv4@127.0.0.1:{API_PORT} level admin", "stats socket /run/admin.sock"),
     "no runtime API"),
    (lambda t: t.replace("backend reroll_app", "backend other"), "no backend reroll_app"),
    (lambda t: t.replace("slot 1-64 app:8080", "slot 1-64 app:9090"), "no `server-template` for app:8080"),
    (lambda t: t.replace(" resolvers docker", ""), "have no resolvers"),
    (lambda t: t.replace("default-server check", "default-server"), "have no check"),
    (lambda t: t.replace("    server-template", "    # server-template"), "no `server-template`"),
])
def test_a_running_configuration_that_cannot_be_driven_says_what_it_lacks(change, problem):
    said = missing(change(config([APP])), APP)
    assert said is not None and problem in said, said


def test_the_file_docker_cp_writes_out_as_a_tar_is_read_from_it():
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        data = config([APP]).encode()
        info = tarfile.TarInfo("haproxy.cfg")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert file_in_tar(archive.getvalue().decode()) == config([APP])
    assert file_in_tar("Error: No such container:path") is None


# ------------------------------------------------------------------------------------ the moves, as commands


class Proxy:
    """The proxy's container as the driver reaches it: `show stat` answered from recordings, in turn (the last one
    again and again), every other command answered `answer` and recorded."""

    def __init__(self, *stats: str, answer: str = "\n") -> None:
        self.stats = list(stats)
        self.answer = answer
        self.commands: List[List[str]] = []  # of each connection
        self.engine = FakeEngine()
        self.engine.exec_answer = self._exec
        self.driver = HAProxyDriver(self.engine)

    def _exec(self, container: str, argv: List[str]) -> Result:
        assert argv[:2] == ["sh", "-c"] and argv[-1] == str(API_PORT)
        commands = self.engine.execs[-1][2].decode().strip().split("; ")
        self.commands.append(commands)
        if commands[0].startswith("show stat"):
            return Result(0, recorded(self.stats.pop(0) if len(self.stats) > 1 else self.stats[0]), "")
        return Result(0, self.answer, "")


def test_route_to_readies_the_serving_slots_first_and_drains_every_other_one():
    proxy = Proxy("checked-in-drain")
    proxy.driver.route_to("proxy-id", APP, [NEW], [OLD, OLD2])
    show, states = proxy.commands
    assert show == ["show stat reroll_app 4 -1"]
    assert states[0] == "set server reroll_app/slot3 state ready"
    assert sorted(states[1:]) == [f"set server reroll_app/slot{n} state drain" for n in (1, 2, 4, 5)]


def test_route_to_waits_until_dns_has_put_every_serving_container_in_a_slot():
    proxy = Proxy("serving-with-streams", "serving-with-streams", "checked-in-drain")
    proxy.driver.route_to("proxy-id", APP, [NEW], [])
    assert [c[0] for c in proxy.commands].count("show stat reroll_app 4 -1") == 3
    assert "set server reroll_app/slot3 state ready" in proxy.commands[-1]


def test_ready_are_the_containers_whose_slot_passed_its_check_since_it_got_their_address():
    assert Proxy("fresh-in-drain").driver.ready("proxy-id", APP, [OLD, NEW]) == [OLD]
    assert Proxy("checked-in-drain").driver.ready("proxy-id", APP, [OLD, NEW]) == [OLD, NEW]


def test_connections_are_the_sessions_on_each_containers_slot():
    driver = Proxy("switched-draining-streams").driver
    assert driver.connections("proxy-id", APP, [OLD, OLD2, NEW]) == {"p-app-1": 2, "p-app-2": 1, "p-app-3": 0}


def test_cut_shuts_down_the_sessions_of_the_given_containers_slots_only():
    proxy = Proxy("switched-draining-streams")
    proxy.driver.cut("proxy-id", APP, [OLD, OLD2])
    assert proxy.commands[-1] == ["shutdown sessions server reroll_app/slot1",
                                  "shutdown sessions server reroll_app/slot2"]


def test_rest_forces_down_the_drained_slots_of_containers_that_just_stopped_and_readies_every_slot():
    """The two old containers (drained) were stopped; their slots are still up: their checks have not failed yet."""
    proxy = Proxy("old-stopped-up")
    proxy.driver.rest("proxy-id", APP)
    assert proxy.commands == [["show stat reroll_app 4 -1"],
                              ["set server reroll_app/slot3 health down", "set server reroll_app/slot4 health down",
                               *(f"set server reroll_app/slot{n} state ready" for n in range(1, 6))]]


def test_rest_forces_nothing_down_when_no_slot_is_drained():
    proxy = Proxy("serving-with-streams")
    proxy.driver.rest("proxy-id", APP)
    assert proxy.commands[-1] == [f"set server reroll_app/slot{n} state ready" for n in range(1, 6)]


def test_a_refused_command_or_an_api_that_does_not_answer_fails_with_what_haproxy_said():
    with pytest.raises(DeployFailed, match="No such server"):
        Proxy("checked-in-drain", answer="No such server.\n\n").driver.route_to("proxy-id", APP, [NEW], [])
    proxy = Proxy("checked-in-drain")
    proxy.engine.exec_answer = lambda container, argv: Result(1, "", "bash: connect: Connection refused\n")
    with pytest.raises(DeployFailed, match=f"runtime API .*{API_PORT}.* did not answer: bash: connect: Connection"):
        proxy.driver.ready("proxy-id", APP, [NEW])
    proxy.engine.exec_answer = lambda container, argv: Result(0, "No such proxy.\n\n", "")
    with pytest.raises(DeployFailed, match="no backend reroll_app"):
        proxy.driver.connections("proxy-id", APP, [OLD])

"""Proxy mode with HAProxy without a daemon: the configuration made from routes, what a running configuration lacks,
`show stat` as HAProxy 2.6 answered it (recorded in tests/unit/data/haproxy, from the example's proxy during a
switch; the free slots after the fifth left out), and each move against a model of HAProxy's servers, which
answers the runtime API's commands as HAProxy 2.6 does.
tests/engine/test_proxy_haproxy.py proves the moves against the real proxy."""

import dataclasses
import io
import os
import tarfile
from typing import List, Optional

import pytest

from docker_reroll import haproxy
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
    assert "server-template slot 1-64 app:8080 resolvers docker init-addr none" in text
    assert "server-template pin 1-64 127.0.0.1:8080 disabled" in text, "pins: no name to resolve, free at rest"
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


def test_without_client_keepalive_each_answer_closes_the_clients_connection_and_a_config_without_it_is_refused():
    closing = dataclasses.replace(APP, client_keepalive=False)
    backend = section(config([closing]), "backend reroll_app").splitlines()
    assert "    option http-server-close" in backend and "    http-response set-header Connection close" in backend
    assert missing(config([closing]), closing) is None
    said = missing(config([APP]), closing)
    assert said == "its backend reroll_app has no `http-response set-header Connection close` (its label " \
                   "docker-reroll.proxy-client-keepalive is false)"
    assert "set-header" not in config([APP]), "client keep-alive by default"
    assert missing(config([closing]), APP) is None, "a proxy that closes more than asked drops nothing"


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
    (lambda t: t.replace("    server-template pin", "    # server-template pin"), "no pins for deploys"),
    (lambda t: t.replace(" disabled", ""), "no pins for deploys"),
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


class Server:
    """One server of the model: a slot (DNS gives its address) or a pin (in maintenance until it gets one)."""

    def __init__(self, name: str, address: str = "", state: str = "ready", health: int = 2, sessions: int = 0):
        self.name, self.address, self.state, self.health, self.sessions = name, address, state, health, sessions
        self.check = "L4OK" if address and health else ""

    def row(self) -> str:
        if self.state == "maint" or not self.address:
            status = "MAINT"
        else:
            status = "DOWN" if self.health < 1 else "DRAIN" if self.state == "drain" else "UP"
        address = f"{self.address or '127.0.0.1'}:8080" if self.address or self.name.startswith("pin") else ""
        return f"reroll_app,{self.name},{status},{self.check},{self.health},1,2,{address},{self.sessions},2"


class HAProxy:
    """HAProxy's backend reroll_app as the driver reaches it through `docker exec`: slots, PINS pins, and a round
    of checks before each `show stat` (a pin or slot passes when its address is in `answering`)."""

    def __init__(self, slots: List[Server], pins: int = 4, answering: Optional[set] = None) -> None:
        self.servers = {s.name: s for s in slots}
        self.servers.update((f"pin{n}", Server(f"pin{n}", state="maint", health=0)) for n in range(1, pins + 1))
        self.answering = answering if answering is not None else {s.address for s in slots if s.address}
        self.pins_answered = True
        self.commands: List[List[str]] = []  # those of each connection, `show stat` left out
        self.engine = FakeEngine()
        self.engine.exec_answer = self._exec
        self.driver = HAProxyDriver(self.engine)

    def pin(self, address: str) -> Server:
        return next(s for s in self.servers.values() if s.name.startswith("pin") and s.address == address
                    and s.state != "maint")

    def _exec(self, container: str, argv: List[str]) -> Result:
        assert argv[:2] == ["sh", "-c"] and str(API_PORT) in argv  # one exec, or the session's
        commands = self.engine.execs[-1][2].decode().strip().split("; ")
        if commands == ["show stat reroll_app 4 -1"]:
            self._checks()
            header = "# pxname,svname,status,check_status,check_health,check_rise,check_fall,addr,scur,type"
            return Result(0, "\n".join([header, *(s.row() for s in self.servers.values())]) + "\n\n", "")
        self.commands.append(commands)
        return Result(0, "".join(self._command(c.split()) for c in commands), "")

    def _checks(self) -> None:
        for server in self.servers.values():
            if server.state != "maint" and server.address:
                passed = server.address in self.answering and (self.pins_answered or server.name.startswith("slot"))
                server.health = min(server.health + 1, 2) if passed else max(server.health - 1, 0)
                server.check = "L4OK" if passed else "L4CON"

    def _command(self, words: List[str]) -> str:
        server = self.servers.get(next(w for w in words if "/" in w).partition("/")[2])
        if server is None:
            return "No such server.\n\n"
        if words[:2] == ["set", "server"] and words[3] == "addr":
            was, server.address = server.address or "127.0.0.1", words[4]
            return f"IP changed from '{was}' to '{words[4]}', no need to change the port by 'stats socket command'\n"
        if words[:2] == ["set", "server"] and words[3] == "state":
            server.state = words[4]
        elif words[:2] == ["set", "server"] and words[3:5] == ["health", "down"]:
            server.health = 0
        elif words[:3] == ["shutdown", "sessions", "server"]:
            server.sessions = 0
        return "\n"


def serving_slots(*addresses: str, sessions: int = 0) -> List[Server]:
    """The backend at rest: a slot for each address, up and checked, then free slots."""
    return [*(Server(f"slot{n}", a, sessions=sessions) for n, a in enumerate(addresses, 1)),
            Server(f"slot{len(addresses) + 1}"), Server(f"slot{len(addresses) + 2}")]


def test_before_the_new_containers_start_those_that_serve_are_pinned_checked_then_alone_ready():
    proxy = HAProxy(serving_slots(OLD.address, OLD2.address))
    proxy.driver.route_to("proxy-id", APP, [OLD, OLD2], [])
    pinning, states = proxy.commands
    assert pinning == ["set server reroll_app/pin1 addr 172.21.0.3 port 8080", "set server reroll_app/pin1 state drain",
                       "set server reroll_app/pin1 health down",
                       "set server reroll_app/pin2 addr 172.21.0.4 port 8080", "set server reroll_app/pin2 state drain",
                       "set server reroll_app/pin2 health down"], "forced down: only a check brings a pin up"
    assert states[:2] == ["set server reroll_app/pin1 state ready", "set server reroll_app/pin2 state ready"], \
        "ready first: the backend is never without a server"
    assert sorted(states[2:]) == [f"set server reroll_app/slot{n} state drain" for n in range(1, 5)], \
        "every slot drains, free ones too (DNS may put a new container there); free pins stay in maintenance"
    assert proxy.pin(OLD.address).health >= 1, "its check passed before it was readied"


def test_a_pin_whose_check_does_not_pass_while_its_slot_does_fails_the_deploy_before_any_change(monkeypatch):
    monkeypatch.setattr(haproxy, "PIN_WAIT", 0.3)
    proxy = HAProxy(serving_slots(OLD.address))
    proxy.pins_answered = False  # say the container answers on another port than the route's
    with pytest.raises(DeployFailed, match="172.21.0.3 in the pin.s. .* did not pass within 0.3s, while it passes "
                                           "through Docker's DNS"):
        proxy.driver.route_to("proxy-id", APP, [OLD], [])
    assert all(s.state == "ready" for s in proxy.servers.values() if s.name.startswith("slot")), "routing as it was"


def test_a_container_that_fails_its_check_through_dns_too_is_pinned_ready_all_the_same(monkeypatch):
    """It serves nothing now either; a deploy is often what mends it."""
    monkeypatch.setattr(haproxy, "PIN_WAIT", 0.3)
    proxy = HAProxy(serving_slots(OLD.address, OLD2.address), answering={OLD.address})
    proxy.driver.route_to("proxy-id", APP, [OLD, OLD2], [])
    assert proxy.commands[-1][:2] == [f"set server reroll_app/pin{n} state ready" for n in (1, 2)]


def test_new_containers_are_followed_in_drained_pins_and_are_ready_once_their_own_check_passed():
    proxy = HAProxy(serving_slots(OLD.address), answering={OLD.address})
    proxy.driver.route_to("proxy-id", APP, [OLD], [])
    proxy.driver.follow("proxy-id", APP, [NEW])
    proxy.driver.follow("proxy-id", APP, [NEW])
    assert proxy.commands[-1][0] == "set server reroll_app/pin2 addr 172.21.0.5 port 8080", "pinned once"
    assert proxy.pin(NEW.address).state == "drain"
    assert proxy.driver.ready("proxy-id", APP, [OLD, NEW]) == [OLD], "not answering yet"
    proxy.answering.add(NEW.address)
    assert proxy.driver.ready("proxy-id", APP, [OLD, NEW]) == [OLD, NEW]


def test_the_switch_readies_the_new_pins_and_drains_the_old_ones_whatever_dns_does_meanwhile():
    proxy = HAProxy(serving_slots(OLD.address), answering={OLD.address, NEW.address})
    proxy.driver.route_to("proxy-id", APP, [OLD], [])
    proxy.driver.follow("proxy-id", APP, [NEW])
    proxy.servers["slot1"].address = NEW.address  # DNS moved the slot of the old container to the new one
    proxy.driver.route_to("proxy-id", APP, [NEW], [OLD])
    assert proxy.commands[-1][0] == "set server reroll_app/pin2 state ready"
    assert (proxy.pin(NEW.address).state, proxy.pin(OLD.address).state) == ("ready", "drain")
    assert all(s.state == "drain" for s in proxy.servers.values() if s.name.startswith("slot"))


def test_a_deploy_with_more_containers_than_free_pins_fails_saying_so():
    proxy = HAProxy(serving_slots(OLD.address, OLD2.address), pins=1)
    with pytest.raises(DeployFailed, match="1 free pin.s. for 2 container.s."):
        proxy.driver.route_to("proxy-id", APP, [OLD, OLD2], [])
    assert proxy.commands == [], "refused before any change"


def test_connections_count_the_sessions_on_every_server_holding_a_container_and_cut_ends_them():
    proxy = HAProxy(serving_slots(OLD.address, OLD2.address, sessions=2))
    proxy.driver.route_to("proxy-id", APP, [OLD, OLD2], [])
    proxy.pin(OLD.address).sessions = 1
    assert proxy.driver.connections("proxy-id", APP, [OLD, OLD2, NEW]) == {"p-app-1": 3, "p-app-2": 2, "p-app-3": 0}
    proxy.driver.cut("proxy-id", APP, [OLD])
    assert sorted(proxy.commands[-1]) == ["shutdown sessions server reroll_app/pin1",
                                          "shutdown sessions server reroll_app/slot1"]
    assert proxy.driver.connections("proxy-id", APP, [OLD, OLD2]) == {"p-app-1": 0, "p-app-2": 2}


def deployed(dns_gives_new: bool) -> HAProxy:
    """One old container replaced by a new one and stopped (its drained slot still up: its checks have not failed
    yet); DNS has put the new one in a slot, or not yet."""
    proxy = HAProxy(serving_slots(OLD.address), answering={OLD.address, NEW.address})
    proxy.driver.route_to("proxy-id", APP, [OLD], [])
    proxy.driver.follow("proxy-id", APP, [NEW])
    proxy.driver.ready("proxy-id", APP, [NEW])
    proxy.driver.route_to("proxy-id", APP, [NEW], [OLD])
    if dns_gives_new:
        proxy.servers["slot2"].address, proxy.servers["slot2"].health = NEW.address, 2
    proxy.answering.discard(OLD.address)
    return proxy


def test_at_rest_the_slots_route_again_and_the_pins_go_free_once_dns_holds_what_serves():
    proxy = deployed(dns_gives_new=True)
    assert proxy.driver.rest("proxy-id", APP) is None
    slots_ready, pins_free = proxy.commands[-2:]
    assert slots_ready[0] == "set server reroll_app/slot1 health down", "the stopped container's slot, at once"
    assert sorted(slots_ready[1:]) == [f"set server reroll_app/slot{n} state ready" for n in range(1, 4)]
    assert sorted(pins_free) == ["set server reroll_app/pin1 state maint", "set server reroll_app/pin2 state maint"]


def test_at_rest_a_pin_stays_while_dns_does_not_hold_its_container_and_a_warning_says_so(monkeypatch):
    monkeypatch.setattr(haproxy, "REST_WAIT", 0.3)
    proxy = deployed(dns_gives_new=False)
    said = proxy.driver.rest("proxy-id", APP)
    assert said is not None and "did not give HAProxy's backend reroll_app 172.21.0.5 within 0.3s" in said
    assert proxy.commands[-1] == ["set server reroll_app/pin1 state maint"], "the old container's pin goes free"
    assert proxy.pin(NEW.address).state == "ready", "the new container's pin keeps routing to it"


def test_a_refused_command_or_an_api_that_does_not_answer_fails_with_what_haproxy_said():
    proxy = HAProxy(serving_slots(OLD.address))
    proxy.servers.pop("slot3")
    proxy.driver._slots = lambda proxy_id, route: [*parse_stat(recorded("serving-with-streams"))]
    with pytest.raises(DeployFailed, match="No such server"):
        proxy.driver.route_to("proxy-id", APP, [], [])
    proxy.engine.exec_answer = lambda container, argv: Result(1, "", "bash: connect: Connection refused\n")
    with pytest.raises(DeployFailed, match=f"runtime API .*{API_PORT}.* did not answer: bash: connect: Connection"):
        HAProxyDriver(proxy.engine).ready("proxy-id", APP, [NEW])
    proxy.engine.exec_answer = lambda container, argv: Result(0, "No such proxy.\n\n", "")
    with pytest.raises(DeployFailed, match="no backend reroll_app"):
        HAProxyDriver(proxy.engine).connections("proxy-id", APP, [OLD])


def test_a_deploys_calls_go_through_one_session_and_a_failed_session_leaves_one_exec_per_call():
    proxy = HAProxy(serving_slots(OLD.address))
    proxy.driver.route_to("proxy-id", APP, [OLD], [])
    proxy.driver.follow("proxy-id", APP, [NEW])
    assert len(proxy.engine.sessions) == 1 and len(proxy.engine.execs) >= 4
    assert all(argv[-1] == haproxy.SESSION_END for _, argv, _ in proxy.engine.execs), "every call in the session"
    [(container, argv)] = proxy.engine.sessions
    assert container == "proxy-id" and argv[:3] == ["sh", "-c", haproxy.API_SESSION]

    proxy.engine.sessions_fail = True  # the session ended (an engine restart, say): the call is made all the same
    asked = len(proxy.engine.execs)
    proxy.driver.route_to("proxy-id", APP, [NEW], [OLD])
    later = proxy.engine.execs[asked:]
    assert later and all(argv[-1] == str(API_PORT) for _, argv, _ in later), "one exec per call from then on"
    assert len(proxy.engine.sessions) == 1, "no new session"
    assert proxy.pin(NEW.address).state == "ready" and proxy.pin(OLD.address).state == "drain"

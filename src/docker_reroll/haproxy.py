"""Proxy mode with HAProxy, driven through its runtime API: nothing is reloaded during a deploy, so no client
connection is ever closed by the proxy (a reload closes idle keep-alive connections, and a client that reuses one
at that moment loses its request).

Each route's backend has two sets of servers:
- slots: a `server-template` that Docker's DNS fills, one address each, checked by HAProxy. At rest they alone
  route, so compose's own commands (`up`, `--scale`) need nothing else.
- pins: a `server-template` of servers with no name to resolve, in maintenance at rest. During a deploy
  docker-reroll puts the address of each container that takes part (from `docker inspect`, never from DNS) in a pin
  of its own, and routes by the pins' states: `ready` (new connections) for the containers that serve, `drain` (keeps
  its connections, gets no new one, still checked) for every other server. While containers join and leave,
  Docker's DNS can answer for a moment with only some of them, and HAProxy then moves or empties slots; a pin is
  never moved, so what serves during a deploy does not depend on DNS.
A pin is forced down when it gets an address: only a check that passes brings it up, so a pin that is up has been
checked at that address. `maint` is used only for free pins: HAProxy pauses the checks of a server in maintenance.
At the end the slots route again, once DNS has put every container that serves in one, and the pins go back to
maintenance.
"""

import csv
import io
import re
import tarfile
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from docker_reroll.errors import DeployFailed, first_line
from docker_reroll.proxy import KEEPALIVE_LABEL, Backend, Route
from docker_reroll.proxy_driver import SESSION_END, ProxyDriver

# The runtime API, on the loopback of the proxy's container only: a port outside Linux's ephemeral range (so no
# connection of HAProxy's own can hold it) and unlikely to be one a service listens on.
API_PORT = 61999
API_TIMEOUT = 10.0
# Slots and pins per backend: a deploy runs the old and the new containers side by side, each in a pin (and the
# address of a container that is gone stays in its slot for about a second, `hold obsolete`): up to 32 replicas.
SLOTS = 64
PINS = 64
SLOT, PIN = "slot", "pin"  # the names of the two server-templates
# HAProxy's own check of each server: every 250 ms; one pass puts a server up, two failures take it down.
CHECK = "check inter 250ms fastinter 250ms downinter 250ms rise 1 fall 2"
PIN_WAIT = 10.0  # how long the check of a container that serves may take to pass in the pin it just got
REST_WAIT = 10.0  # how long DNS may take, at the end, to put every container that serves in a slot
POLL_SECONDS = 0.1

# The client of the runtime API inside the proxy's container, with whatever it has: bash's /dev/tcp (the official
# Debian-based image has bash), else socat, else nc. The commands come on standard input; HAProxy answers them
# and closes the connection.
API_CLIENT = (
    'if command -v bash >/dev/null 2>&1; then exec bash -c \'exec 3<>"/dev/tcp/127.0.0.1/$0" && cat >&3 && '
    'cat <&3\' "$1"; fi; '
    'if command -v socat >/dev/null 2>&1; then exec socat -t 5 - "TCP4:127.0.0.1:$1"; fi; '
    'if command -v nc >/dev/null 2>&1; then exec nc 127.0.0.1 "$1"; fi; '
    'echo "no bash, socat or nc in the container to reach the runtime API with" >&2; exit 127'
)
# One `docker exec` for a whole deploy's calls, not one per call (each costs tens of milliseconds and the engine's
# work): a loop that runs the client above for each line it reads, and ends each answer with a line of its own and
# the client's exit status. Its arguments: the client, the port, that end line.
API_SESSION = ('while IFS= read -r line; do printf "%s\\n" "$line" | sh -c "$0" sh "$1" 2>&1; '
               'printf "\\n%s %s\\n" "$2" "$?"; done')
OK_CHECKS = ("L4OK", "L6OK", "L7OK", "L7OKC")  # `show stat` check_status of a passed check
# What `set server ... addr` answers when it did it ("IP changed from ...", "no need to change the addr ...").
ADDRESS_SET = re.compile(r"changed from|no need to change")


@dataclass(frozen=True)
class Slot:
    """One server of a route's backend as `show stat` reports it: a slot DNS fills, or a pin."""

    name: str
    address: str  # the IP address it holds; "" while a slot holds none
    checked: bool  # its check passed since the address came (a slot that gets one is up before any check)
    down: bool  # its check failed: it gets no connection, whatever state it is set to
    drained: bool  # set to drain, and up (a drained slot that is down shows as DOWN)
    # scur: what is in flight on it: requests in HTTP (each ends once its response is sent on, the server side
    # closing after each), connections in TCP
    sessions: int
    maint: bool = False  # in maintenance: a free pin

    @property
    def pinned(self) -> bool:
        """A pin (docker-reroll's), not a slot (DNS's)."""
        return self.name.startswith(PIN)

    @property
    def holding(self) -> bool:
        """A pin in use: it holds a container of this deploy."""
        return self.pinned and not self.maint

    @property
    def passing(self) -> bool:
        """Up by its check: for a pin, which was forced down when it got its address, a check passed there."""
        return not self.down and not self.maint


class HAProxyDriver(ProxyDriver):
    kind = "haproxy"

    def config(self, routes: Sequence[Route]) -> str:
        return config(routes)

    def check(self, proxy_id: str, route: Route) -> Optional[str]:
        """Read only: the configuration file as the proxy's container has it (`docker cp` out)."""
        result = self.docker.run("cp", f"{proxy_id}:{route.config_path}", "-", check=False)
        text = file_in_tar(result.stdout) if result.returncode == 0 else None
        if text is None:
            return (f"its configuration {route.config_path} cannot be read"
                    + (f" ({first_line(result.stderr)})" if result.stderr.strip() else ""))
        return missing(text, route)

    def follow(self, proxy_id: str, route: Route, backends: Sequence[Backend]) -> None:
        """Each of `backends` in a pin, drained: checked by HAProxy, sent nothing."""
        self._pin(proxy_id, route, backends, self._slots(proxy_id, route))

    def route_to(self, proxy_id: str, route: Route, serving: Sequence[Backend], leaving: Sequence[Backend]) -> None:
        """`serving` ready, each in its pin, once the check of every pin just given passed; every other server
        (the slots, free ones too, and the pins of `leaving`) drains. Ready first, so that the backend is never
        without a server."""
        servers = self._slots(proxy_id, route)
        fresh = self._pin(proxy_id, route, serving, servers)
        if fresh:
            servers = self._wait_passing(proxy_id, route, fresh)
        wanted = {b.address for b in serving}
        ready = [s for s in servers if s.holding and s.address in wanted]
        others = [s for s in servers if s not in ready and not (s.pinned and s.maint)]
        self._command(proxy_id, [f"set server {route.name}/{s.name} state ready" for s in ready]
                           + [f"set server {route.name}/{s.name} state drain" for s in others])

    def ready(self, proxy_id: str, route: Route, backends: Sequence[Backend]) -> List[Backend]:
        passed = {s.address for s in self._slots(proxy_id, route) if s.holding and s.passing}
        return [b for b in backends if b.address in passed]

    def connections(self, proxy_id: str, route: Route, backends: Sequence[Backend]) -> Dict[str, int]:
        slots = self._slots(proxy_id, route)
        return {b.name: sum(s.sessions for s in slots if s.address == b.address) for b in backends}

    def cut(self, proxy_id: str, route: Route, backends: Sequence[Backend]) -> None:
        addresses = {b.address for b in backends}
        commands = [f"shutdown sessions server {route.name}/{s.name}" for s in self._slots(proxy_id, route)
                    if s.address in addresses and not s.maint]
        if commands:
            self._command(proxy_id, commands)

    def rest(self, proxy_id: str, route: Route) -> Optional[str]:
        """Every slot ready; then, once a slot that passes its check holds each container that serves, every pin
        back in maintenance. A drained slot still up that holds no container that serves holds, at the end of a
        deploy, one it stopped (its check has not failed yet): forced down first, so that it gets no connection;
        its check brings it up again if a container answers there."""
        servers = self._slots(proxy_id, route)
        serving = {s.address for s in servers if s.holding and not s.drained and s.passing}
        gone = [f"set server {route.name}/{s.name} health down" for s in servers
                if not s.pinned and s.drained and s.address and s.address not in serving]
        self._command(proxy_id, gone + [f"set server {route.name}/{s.name} state ready"
                                             for s in servers if not s.pinned])
        deadline = time.monotonic() + REST_WAIT
        while True:
            servers = self._slots(proxy_id, route)
            in_slots = {s.address for s in servers if not s.pinned and s.checked}
            if serving <= in_slots or time.monotonic() > deadline:
                break
            time.sleep(POLL_SECONDS)
        free = [s for s in servers if s.holding and s.address not in serving - in_slots]
        if free:
            self._command(proxy_id, [f"set server {route.name}/{s.name} state maint" for s in free])
        missing_addresses = sorted(serving - in_slots)
        if missing_addresses:
            return (f"Docker's DNS did not give HAProxy's backend {route.name} {', '.join(missing_addresses)} within "
                    f"{REST_WAIT:g}s: their pins keep routing to them until the next deploy")
        return None

    # -- through the runtime API

    def _pin(self, proxy_id: str, route: Route, backends: Sequence[Backend], servers: List[Slot]) -> List[str]:
        """Each of `backends` that has no pin gets a free one, drained and forced down (its check brings it up);
        the names of those pins."""
        pinned = {s.address for s in servers if s.holding}
        needed = [b for b in backends if b.address not in pinned]
        free = [s for s in servers if s.pinned and s.maint]
        if len(needed) > len(free):
            raise DeployFailed(f"proxy mode: HAProxy's backend {route.name} has {len(free)} free pin(s) for "
                               f"{len(needed)} container(s) (`docker reroll --dry-run` configures {PINS})")
        given = list(zip(free, needed))
        if given:
            commands = []
            for pin, backend in given:
                server = f"{route.name}/{pin.name}"
                commands += [f"set server {server} addr {backend.address} port {backend.port}",
                             f"set server {server} state drain", f"set server {server} health down"]
            self._command(proxy_id, commands)
        return [pin.name for pin, _ in given]

    def _wait_passing(self, proxy_id: str, route: Route, names: List[str]) -> List[Slot]:
        """Until the check of each of these pins passed (at most PIN_WAIT); the servers as they are then. A pin
        still failing then is an error if its container passes through a slot (the pin cannot reach it), and
        nothing lost if not: its container serves nothing now either."""
        deadline = time.monotonic() + PIN_WAIT
        while True:
            servers = self._slots(proxy_id, route)
            failing = [s for s in servers if s.name in names and not s.passing]
            if not failing:
                return servers
            if time.monotonic() > deadline:
                reached = {s.address for s in servers if not s.pinned and s.passing}
                wrong = [s.address for s in failing if s.address in reached]
                if wrong:
                    raise DeployFailed(f"proxy mode: HAProxy's check of {', '.join(wrong)} in the pin(s) "
                                       f"docker-reroll gave them did not pass within {PIN_WAIT:g}s, while it passes "
                                       "through Docker's DNS")
                return servers
            time.sleep(POLL_SECONDS)

    def _slots(self, proxy_id: str, route: Route) -> List[Slot]:
        answer = self._api(proxy_id, [f"show stat {route.name} 4 -1"])
        try:
            return parse_stat(answer)
        except ValueError:
            raise DeployFailed(f"proxy mode: HAProxy has no backend {route.name} ({first_line(answer)})") from None

    def _command(self, proxy_id: str, commands: List[str]) -> None:
        """Commands that answer nothing when they succeed, or that an address was set."""
        answer = self._api(proxy_id, commands)
        refused = [line for line in answer.splitlines() if line.strip() and not ADDRESS_SET.search(line)]
        if refused:
            raise DeployFailed(f"proxy mode: HAProxy refused `{commands[0]}`...: {refused[0].strip()}")

    def session_command(self) -> List[str]:
        return ["sh", "-c", API_SESSION, API_CLIENT, str(API_PORT), SESSION_END]

    def _api(self, proxy_id: str, commands: Sequence[str]) -> str:
        """One connection to the runtime API, for commands run in order (joined with `;`), and their answers:
        through the proxy's session, or, once a session failed, one exec each."""
        line = "; ".join(commands)
        result = self.ask(proxy_id, line, API_TIMEOUT, lambda: self.docker.exec_in(
            proxy_id, ["sh", "-c", API_CLIENT, "sh", str(API_PORT)], input_bytes=(line + "\n").encode(),
            timeout=API_TIMEOUT))
        if result.returncode != 0:
            raise DeployFailed(f"proxy mode: HAProxy's runtime API (127.0.0.1:{API_PORT} in its container) did not "
                               f"answer: {first_line(result.stderr) or f'exit {result.returncode}'}")
        return result.stdout


# ------------------------------------------------------------------------------------------------ pure functions


def parse_stat(text: str) -> List[Slot]:
    """The servers in `show stat` output (CSV, its header line starting with `# `); ValueError without one."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
    if start is None:
        raise ValueError("no `show stat` header")
    rows = csv.DictReader([lines[start][2:], *(line for line in lines[start + 1:] if line.strip())])
    return [_slot(row) for row in rows if row.get("type") == "2"]  # 2: a server


def _slot(row: Dict[str, str]) -> Slot:
    health, rise, fall = (_number(row.get(key)) for key in ("check_health", "check_rise", "check_fall"))
    status = (row.get("check_status") or "").lstrip("* ")  # `* ` marks a check in progress
    address = (row.get("addr") or "").rpartition(":")[0].strip("[]")
    # Health runs from 0 to rise + fall - 1, and is set to `rise` when a server gets an address: only a check that
    # passed since then brings it to the top (so a slot that held another container says nothing about this one).
    return Slot(name=row.get("svname") or "", address=address,
                checked=status in OK_CHECKS and health >= rise + fall - 1, down=health < rise,
                drained=(row.get("status") or "").startswith("DRAIN"), sessions=_number(row.get("scur")),
                maint=(row.get("status") or "").startswith("MAINT"))


def _number(text: Optional[str]) -> int:
    return int(text) if text and text.isdigit() else 0


def file_in_tar(text: str) -> Optional[str]:
    """The first file in a tar archive as `docker cp CONTAINER:FILE -` writes it (read as text)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(text.encode()), mode="r:") as archive:
            for member in archive:
                if member.isfile():
                    handle = archive.extractfile(member)
                    return handle.read().decode(errors="replace") if handle else None
    except (tarfile.TarError, OSError):
        return None
    return None


def sections(text: str) -> Dict[str, List[List[str]]]:
    """An HAProxy configuration as {"backend reroll_app": [words of each line], ...}, comments left out."""
    found: Dict[str, List[List[str]]] = {}
    current: List[List[str]] = []
    for line in text.splitlines():
        words = re.sub(r"(^|\s)#.*", "", line).split()
        if not words:
            continue
        if words[0] in SECTION_KEYWORDS:
            current = found.setdefault(" ".join(words[:2]), [])
        else:
            current.append(words)
    return found


SECTION_KEYWORDS = ("global", "defaults", "frontend", "backend", "listen", "resolvers", "peers", "userlist",
                    "mailers", "program", "http-errors", "ring", "cache")


def missing(text: str, route: Route) -> Optional[str]:
    """What a configuration lacks for docker-reroll to drive this route, or None."""
    parts = sections(text)
    if not any(words[:2] == ["stats", "socket"] and words[2:3] == [f"ipv4@127.0.0.1:{API_PORT}"]
               and "admin" in words for words in parts.get("global", [])):
        return f"it has no runtime API for docker-reroll (`stats socket ipv4@127.0.0.1:{API_PORT} level admin` in " \
               "its global section)"
    backend = parts.get(f"backend {route.name}")
    if backend is None:
        return f"its configuration has no backend {route.name}"
    target = f"{route.service}:{route.port}"
    template = next((words for words in backend if words[0] == "server-template" and words[3:4] == [target]), None)
    if template is None:
        return f"its backend {route.name} has no `server-template` for {target} (the service by Docker's DNS)"
    options = template + [word for words in backend if words[0] == "default-server" for word in words]
    lacking = [word for word in ("resolvers", "check") if word not in options]
    if lacking:
        return f"the servers of its backend {route.name} have no {' and no '.join(lacking)}"
    if not route.client_keepalive and CLOSE_CLIENT.lower().split() not in [[w.lower() for w in words]
                                                                           for words in backend]:
        return f"its backend {route.name} has no `{CLOSE_CLIENT}` (its label {KEEPALIVE_LABEL} is false)"
    pins = next((words for words in backend if words[:2] == ["server-template", PIN]), None)
    defaults = [word for words in backend if words[0] == "default-server" for word in words]
    if pins is None or "disabled" not in pins or "check" not in pins + defaults:
        return (f"its backend {route.name} has no pins for deploys, checked and in maintenance at rest "
                f"(`server-template {PIN} 1-{PINS} 127.0.0.1:{route.port} disabled`, with `check`)")
    return None


def config(routes: Sequence[Route]) -> str:
    """The whole configuration at rest for these routes (those of one proxy)."""
    ports = sorted({r.listen for r in routes})
    frontends = [_frontend(port, sorted((r for r in routes if r.listen == port), key=lambda r: r.service))
                 for port in ports]
    backends = [_backend(r) for r in sorted(routes, key=lambda r: r.service)]
    return "\n".join([HEADER, *frontends, *backends])


HEADER = f"""\
# HAProxy for docker-reroll's proxy mode, generated from the compose file's labels (`docker reroll --dry-run SERVICE`
# prints it). At rest each backend finds its service's containers through Docker's DNS (its slots) and checks them
# itself, so compose's own commands need nothing else; during a deploy docker-reroll puts the containers it deploys
# in pins of their own (by address, which DNS cannot move) and sets the servers' states through the runtime API
# below (no reload). A reload of your own is hitless too (`option idle-close-on-response`).
global
    log stdout format raw local0 info
    maxconn 4096
    stats socket ipv4@127.0.0.1:{API_PORT} level admin

defaults
    log global
    option dontlog-normal
    retries 3
    timeout connect 5s
    timeout client 1m
    timeout server 1m
    timeout tunnel 1h
    timeout http-request 10s
    timeout http-keep-alive 10s
    timeout check 1s

# Docker's embedded DNS, asked every 500 ms: the address of a container that is gone leaves its server 1 s after
# it left the answer. When DNS fails (no answer, an error, the name unknown: engine 20.10 forgets every name when
# it leaves a swarm), the last addresses are kept 30 s rather than 1 s, which would leave the backend empty:
# HAProxy's own checks take any that stops answering out of service meanwhile.
resolvers docker
    nameserver dns 127.0.0.11:53
    accepted_payload_size 8192
    resolve_retries 3
    timeout resolve 500ms
    timeout retry 250ms
    hold valid 500ms
    hold obsolete 1s
    hold nx 30s
    hold timeout 30s
    hold refused 30s
    hold other 30s
"""


def _frontend(port: int, routes: List[Route]) -> str:
    mode = routes[0].protocol
    lines = [f"frontend port_{port}", f"    mode {mode}", f"    bind :{port}"]
    if mode == "http":
        lines += ["    option httplog", "    option idle-close-on-response"]
        lines += [f"    use_backend {r.name} if {{ req.hdr(host),field(1,:) -i {' '.join(r.hosts)} }}"
                  for r in routes if r.hosts]
    else:
        lines.append("    option tcplog")
    lines += [f"    default_backend {r.name}" for r in routes if not r.hosts]
    return "\n".join(lines) + "\n"


# With client keep-alive off (docker-reroll.proxy-client-keepalive: false), each answer closes the client's
# connection too. (HAProxy 2.6 takes `option httpclose` in a backend but keeps the client's connection open.)
CLOSE_CLIENT = "http-response set-header Connection close"


def _backend(route: Route) -> str:
    lines = [f"backend {route.name}", f"    mode {route.protocol}", "    balance roundrobin"]
    if route.protocol == "http":
        lines.append("    option http-server-close")  # a connection to a server is a request in flight
        if not route.client_keepalive:
            lines.append(f"    {CLOSE_CLIENT}")
        if route.health_path:
            lines.append(f"    option httpchk GET {route.health_path}")
    lines += [f"    default-server {CHECK}",
              f"    server-template {SLOT} 1-{SLOTS} {route.service}:{route.port} resolvers docker init-addr none "
              "resolve-prefer ipv4",
              f"    server-template {PIN} 1-{PINS} 127.0.0.1:{route.port} disabled  # docker-reroll's, for deploys"]
    return "\n".join(lines) + "\n"

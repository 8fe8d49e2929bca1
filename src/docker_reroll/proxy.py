"""Proxy mode, decided from the compose file: which services a proxy service routes to, on which ports, how.

A service labelled `docker-reroll.proxy: <proxy service>` does not publish its port: the proxy does (the `ports:`
entry moves to the proxy, unchanged), and a deploy tells the proxy itself where to send connections (the proxy
drivers, haproxy.py and nginx.py), then stops each old container once the proxy holds no connection to it. At rest
the proxy's configuration (which docker-reroll generates: `--dry-run` prints it) routes to the service by Docker's
DNS, so compose's own commands keep working without docker-reroll.

Pure functions over the compose project: the engine side is proxy_drain.py.
"""

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from docker_reroll.errors import UsageError
from docker_reroll.model import ProjectConfig, ServiceSpec
from docker_reroll.options import LABEL_PREFIX, parse_flag

PROXY_LABEL = LABEL_PREFIX + "proxy"  # on a routed service: the compose service that routes to it
PORT_LABEL = LABEL_PREFIX + "proxy-port"  # the port its containers listen on
LISTEN_LABEL = LABEL_PREFIX + "proxy-listen"  # the proxy's port for it (default: the same)
PROTOCOL_LABEL = LABEL_PREFIX + "proxy-protocol"  # http (default) or tcp
HOST_LABEL = LABEL_PREFIX + "proxy-host"  # http: host names, comma-separated, on a listen port shared by several
HEALTH_LABEL = LABEL_PREFIX + "proxy-health"  # http: the path the proxy checks a container by (default: a connect)
# http: false closes each client connection after its answer, so that no reload can close one a client is about to
# reuse (for clients that never retry; nginx's reloads close idle ones)
KEEPALIVE_LABEL = LABEL_PREFIX + "proxy-client-keepalive"
KIND_LABEL = LABEL_PREFIX + "proxy-kind"  # on the proxy service: haproxy or nginx (default: from its image)
CONFIG_LABEL = LABEL_PREFIX + "proxy-config"  # on the proxy service: where it reads its configuration
PROXY_LABELS = (PROXY_LABEL, PORT_LABEL, LISTEN_LABEL, PROTOCOL_LABEL, HOST_LABEL, HEALTH_LABEL, KEEPALIVE_LABEL,
                KIND_LABEL, CONFIG_LABEL)

KINDS = ("haproxy", "nginx")
PROTOCOLS = ("http", "tcp")
# Where the official images read their configuration.
CONFIG_PATHS = {"haproxy": "/usr/local/etc/haproxy/haproxy.cfg", "nginx": "/etc/nginx/nginx.conf"}


@dataclass(frozen=True)
class Route:
    """How the proxy service `proxy` sends connections to the containers of `service`."""

    service: str
    proxy: str
    kind: str  # haproxy or nginx
    port: int  # the service's containers listen on it
    listen: int  # the proxy listens on it (inside its container)
    protocol: str  # http or tcp
    hosts: Tuple[str, ...] = ()  # http: only requests for these host names (none: every request on the port)
    health_path: Optional[str] = None  # http: GET this path to check a container; None: a TCP connect
    client_keepalive: bool = True  # http: a client's connection stays open for its next request
    config_path: str = ""

    @property
    def name(self) -> str:
        """The route's name in the proxy's configuration (a backend, an upstream)."""
        return f"reroll_{_safe(self.service)}"


@dataclass(frozen=True)
class Backend:
    """One container as the proxy reaches it: on the network they share."""

    container_id: str
    name: str  # the container's name
    address: str  # its IP address there
    port: int

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"


def plan_routes(project: ProjectConfig) -> Dict[str, Route]:
    """Every routed service's route, checked as a whole before anything changes (a usage error names the label
    and the service). A proxy's routes must not collide: one TCP route per listen port; HTTP routes sharing a port
    say which host names are theirs."""
    routes: Dict[str, Route] = {}
    for name, spec in sorted(project.services.items()):
        if PROXY_LABEL in spec.labels:
            routes[name] = _route(project, spec)
    _check_collisions(list(routes.values()))
    return routes


def routes_of(routes: Mapping[str, Route], proxy: str) -> List[Route]:
    """The routes one proxy serves, by service name (its configuration lists them all)."""
    return [route for _, route in sorted(routes.items()) if route.proxy == proxy]


def _route(project: ProjectConfig, spec: ServiceSpec) -> Route:
    labels = spec.labels
    proxy_name = labels[PROXY_LABEL].strip()
    proxy = project.services.get(proxy_name)
    if proxy is None or proxy_name == spec.name:
        raise _bad(spec, PROXY_LABEL, labels[PROXY_LABEL], "expected the name of another service of the project "
                                                           f"(defined: {', '.join(sorted(project.services))})")
    if PROXY_LABEL in proxy.labels:
        raise _bad(spec, PROXY_LABEL, proxy_name, f"'{proxy_name}' is itself routed by a proxy")
    targets = sorted(set(proxy.published_targets))
    if PORT_LABEL in labels:
        port = _port(spec, PORT_LABEL)
    elif len(targets) == 1:
        port = targets[0]
    else:
        raise UsageError(f"service '{spec.name}' is routed by '{proxy_name}', which publishes "
                         f"{'no port' if not targets else 'ports ' + ', '.join(map(str, targets))}: say which port "
                         f"its containers listen on with the label {PORT_LABEL}")
    listen = _port(spec, LISTEN_LABEL) if LISTEN_LABEL in labels else port
    protocol = labels.get(PROTOCOL_LABEL, "http").strip()
    if protocol not in PROTOCOLS:
        raise _bad(spec, PROTOCOL_LABEL, protocol, f"expected {' or '.join(PROTOCOLS)}")
    hosts = tuple(h.strip().lower() for h in labels.get(HOST_LABEL, "").split(",") if h.strip())
    health = labels.get(HEALTH_LABEL)
    if (hosts or health is not None) and protocol != "http":
        raise _bad(spec, HOST_LABEL if hosts else HEALTH_LABEL, labels.get(HOST_LABEL) or str(health),
                   "host names and a health path are for protocol http")
    if health is not None and not (health.startswith("/") and all(ch.isprintable() and not ch.isspace()
                                                                  for ch in health)):
        raise _bad(spec, HEALTH_LABEL, health, "expected a path such as /health")
    keepalive = _flag(spec, KEEPALIVE_LABEL, default=True)
    if not keepalive and protocol != "http":
        raise _bad(spec, KEEPALIVE_LABEL, labels[KEEPALIVE_LABEL], "client keep-alive is for protocol http")
    kind = proxy_kind(proxy)
    return Route(service=spec.name, proxy=proxy_name, kind=kind, port=port, listen=listen, protocol=protocol,
                 hosts=hosts, health_path=health, client_keepalive=keepalive,
                 config_path=proxy.labels.get(CONFIG_LABEL, CONFIG_PATHS[kind]).strip())


def proxy_kind(proxy: ServiceSpec) -> str:
    """haproxy or nginx: the proxy service's label says, else its image's name."""
    kind = proxy.labels.get(KIND_LABEL)
    if kind is not None:
        if kind.strip() not in KINDS:
            raise _bad(proxy, KIND_LABEL, kind, f"expected {' or '.join(KINDS)}")
        return kind.strip()
    found = [k for k in KINDS if k in proxy.image.rsplit("/", 1)[-1]]
    if len(found) != 1:
        raise UsageError(f"service '{proxy.name}' routes with proxy mode, but its image '{proxy.image}' does not say "
                         f"which proxy it runs: set the label {KIND_LABEL} ({' or '.join(KINDS)}) on it")
    return found[0]


def _check_collisions(routes: Sequence[Route]) -> None:
    by_port: Dict[Tuple[str, int], List[Route]] = {}
    for route in routes:
        by_port.setdefault((route.proxy, route.listen), []).append(route)
    for (proxy, listen), sharing in by_port.items():
        if len(sharing) < 2:
            continue
        names = ", ".join(r.service for r in sharing)
        if any(r.protocol == "tcp" for r in sharing):
            raise UsageError(f"services {names} all use port {listen} of proxy '{proxy}', and a TCP route needs a "
                             f"port of its own: give each its own {LISTEN_LABEL}")
        if sum(1 for r in sharing if not r.hosts) > 1 or len({h for r in sharing for h in r.hosts}) < \
                sum(len(r.hosts) for r in sharing):
            raise UsageError(f"services {names} share port {listen} of proxy '{proxy}': give each its own host "
                             f"names with {HOST_LABEL} (one of them may have none: it gets the other requests)")


def _port(spec: ServiceSpec, label: str) -> int:
    text = spec.labels[label].strip()
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise _bad(spec, label, text, "expected a port number from 1 to 65535")
    return int(text)


def _flag(spec: ServiceSpec, label: str, default: bool) -> bool:
    if label not in spec.labels:
        return default
    try:
        return parse_flag(spec.labels[label].strip())
    except ValueError as error:
        raise _bad(spec, label, spec.labels[label], str(error)) from None


def _bad(spec: ServiceSpec, label: str, value: str, why: str) -> UsageError:
    return UsageError(f"invalid value '{value}' for label {label} of service '{spec.name}': {why}")


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name)

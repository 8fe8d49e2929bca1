"""The interface of a proxy driver: one per kind of proxy (haproxy.py, nginx.py)."""

from typing import Dict, List, Optional, Sequence

from docker_reroll.engine import Engine
from docker_reroll.proxy import Backend, Route


class ProxyDriver:
    """What docker-reroll does with one kind of proxy (haproxy.py, nginx.py): its configuration at rest, made from
    the routes, and the moves of a deploy, each through Docker operations on the proxy's container only (`docker
    exec`, `docker cp`, `docker kill -s`), so that it works over `--context`, ssh and TLS as the rest does. `check`
    only reads (a dry run calls it)."""

    kind = ""

    def __init__(self, docker: Engine) -> None:
        self.docker = docker

    def config(self, routes: Sequence[Route]) -> str:
        """The proxy's whole configuration at rest, for these routes: what its compose service starts it with."""
        raise NotImplementedError

    def check(self, proxy_id: str, route: Route) -> Optional[str]:
        """What keeps the running proxy from being driven for this route (its configuration is not one made for
        it), or None."""
        raise NotImplementedError

    def follow(self, proxy_id: str, route: Route, backends: Sequence[Backend]) -> None:
        """Have the proxy check these backends (new containers) from now on, without sending them connections;
        a proxy whose `ready` checks on demand needs nothing."""

    def route_to(self, proxy_id: str, route: Route, serving: Sequence[Backend], leaving: Sequence[Backend]) -> None:
        """From now on, new connections go to `serving` only; `leaving` keep the connections they have."""
        raise NotImplementedError

    def ready(self, proxy_id: str, route: Route, backends: Sequence[Backend]) -> List[Backend]:
        """Those of `backends` that the proxy's own check (or a check from inside the proxy's container) passes."""
        raise NotImplementedError

    def connections(self, proxy_id: str, route: Route, backends: Sequence[Backend]) -> Dict[str, int]:
        """Connections (or requests) the proxy still holds to each backend, by container name."""
        raise NotImplementedError

    def cut(self, proxy_id: str, route: Route, backends: Sequence[Backend]) -> None:
        """End what is left to these backends (the drain timeout passed)."""
        raise NotImplementedError

    def close(self) -> None:
        """The deploy is over: end what the driver keeps open (a session with the proxy)."""

    def rest(self, proxy_id: str, route: Route) -> Optional[str]:
        """Back to routing by Docker's DNS, as the configuration at rest does (the deploy is over); what could not
        be, as a warning."""
        raise NotImplementedError

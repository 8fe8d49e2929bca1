"""Proxy mode during a deploy: docker-reroll holds the proxy's routing for one service. Before the new containers
start, the proxy is pinned to the containers that serve now; once the new ones are ready (their Docker health
check, and the proxy's own check), it is switched to them, and each old container is stopped once the proxy holds
no connection to it (bounded by --drain-timeout; what is still open then is cut and counted). Nothing waits on a
clock: the drain ends when the last connection does. At the end the proxy goes back to routing by Docker's DNS.
"""

import time
from typing import Dict, List, Optional, Sequence

from docker_reroll.context import DeployContext, ProxyHold
from docker_reroll.errors import DeployFailed, RefusedError
from docker_reroll.haproxy import HAProxyDriver
from docker_reroll.model import Container
from docker_reroll.nginx import NginxDriver
from docker_reroll.planning import names
from docker_reroll.processes import concurrently
from docker_reroll.proxy import Backend, Route
from docker_reroll.proxy_driver import ProxyDriver
from docker_reroll.retire import DrainStrategy, LastLooks
from docker_reroll.vocabulary import Phase, Shown

DRIVERS = {"haproxy": HAProxyDriver, "nginx": NginxDriver}
POLL_SECONDS = 0.1  # how often the proxy is asked about a drain or a check: it answers in tens of milliseconds


class ProxyControl(ProxyHold):
    def __init__(self, ctx: DeployContext, route: Route, driver: Optional[ProxyDriver] = None) -> None:
        self.ctx = ctx
        self.route = route
        self.driver = driver or DRIVERS[route.kind](ctx.docker)
        self.proxy_id = ""
        self.cut_connections: Dict[str, int] = {}  # container name -> connections still open at the timeout

    def attach(self) -> None:
        """Find the proxy's running container and check it can be driven for this route; before any change."""
        ctx, route = self.ctx, self.route
        ids = ctx.docker.service_container_ids(ctx.project, route.proxy)
        running = [c for c in ctx.docker.inspect(ids) if c.running]
        if len(running) != 1:
            raise RefusedError(f"proxy mode: {ctx.service} is routed by the service '{route.proxy}', which runs "
                               f"{len(running)} container(s); start it with `docker compose up -d {route.proxy}`"
                               if not running else f"proxy mode: '{route.proxy}' runs {len(running)} containers; "
                               "one proxy container is driven, scale it to 1")
        self.proxy = running[0]
        self.proxy_id = running[0].id
        problem = self.driver.check(self.proxy_id, route)
        if problem:
            raise RefusedError(f"proxy mode: the proxy {running[0].name} cannot be driven for {ctx.service}: "
                               f"{problem}; `docker reroll --dry-run {ctx.service}` prints the configuration it "
                               "needs")

    def backends(self, containers: Sequence[Container]) -> List[Backend]:
        """The containers as the proxy reaches them: on a network both are on."""
        shared = set(self.proxy.addresses)
        found = []
        for container in containers:
            network = next((n for n in sorted(container.addresses) if n in shared), None)
            if network is None:
                raise DeployFailed(f"proxy mode: {container.name} shares no network with the proxy "
                                   f"{self.proxy.name}")
            found.append(Backend(container.id, container.name, container.addresses[network], self.route.port))
        return found

    def route_to(self, serving: Sequence[Container], leaving: Sequence[Container] = ()) -> None:
        self.ctx.progress.info(f"proxy {self.proxy.name}: {self.route.service} goes to {names(serving)}"
                               + (f"; {names(leaving)} keep their connections and get no new ones" if leaving
                                  else ""))
        self.driver.route_to(self.proxy_id, self.route, self.backends(serving), self.backends(leaving))

    def wait_ready(self, new: List[Container], timeout: float) -> None:
        """Until the proxy's own check (or a check from inside its container) passes for every new container."""
        ctx = self.ctx
        backends = self.backends(ctx.watch.refresh([c.id for c in new]))
        self.driver.follow(self.proxy_id, self.route, backends)
        deadline = time.monotonic() + timeout
        check = f"GET {self.route.health_path}" if self.route.health_path else "a connect"
        ctx.progress.info(f"waiting up to {timeout:g}s for the proxy's check ({check}) of {names(new)}")
        while True:
            passed = {b.container_id for b in self.driver.ready(self.proxy_id, self.route, backends)}
            if len(passed) == len(backends):
                ctx.progress.info(f"the proxy's check passes for {names(new)}")
                return
            ctx.check_interrupt()
            if time.monotonic() > deadline:
                failing = [c for c in new if c.id not in passed]
                raise DeployFailed(f"the proxy's check ({check}) of {names(failing)} did not pass within "
                                   f"{timeout:g}s")
            time.sleep(POLL_SECONDS)

    def drain(self, leaving: List[Container], timeout: float) -> None:
        """Until the proxy holds no connection to the leaving containers, at most `timeout`; then what is left is
        cut, and counted."""
        ctx = self.ctx
        backends = self.backends(leaving)
        deadline = time.monotonic() + timeout
        ctx.progress.info(f"waiting up to {timeout:g}s (--drain-timeout) for the proxy's connections to "
                          f"{names(leaving)} to end")
        said: Dict[str, int] = {}
        while True:
            left = self.driver.connections(self.proxy_id, self.route, backends)
            if left != said:
                ctx.progress.connections(ctx.service, left)
                said = left
            if not any(left.values()):
                return
            if time.monotonic() > deadline or ctx.interrupts.count > ctx.further_interrupt():
                open_ = {name: count for name, count in left.items() if count}
                self.cut_connections.update(open_)
                ctx.progress.warn(f"{sum(open_.values())} connection(s) still open after {timeout:g}s: cut "
                                  f"({', '.join(f'{n} {c}' for n, c in sorted(open_.items()))})")
                self.driver.cut(self.proxy_id, self.route, backends)
                return
            time.sleep(POLL_SECONDS)

    def rest(self) -> None:
        problem = self.driver.rest(self.proxy_id, self.route)
        if problem:
            self.ctx.progress.warn(f"proxy {self.proxy.name}: {problem}")

    def close(self) -> None:
        self.driver.close()


class ProxyDrain(DrainStrategy):
    """The retirement strategy of proxy mode (retire.py): switch the proxy away from the containers, wait for
    their connections to end, then they are stopped. A roll-back's new containers never had traffic: the proxy was
    pinned to the old ones, so they need no drain."""

    def __init__(self, ctx: DeployContext, proxy: ProxyControl) -> None:
        self.ctx = ctx
        self.proxy = proxy

    def drain(self, containers: List[Container], rolling_back: bool, last_looks: LastLooks) -> None:
        ctx = self.ctx
        leaving = {c.id for c in containers}
        serving = [c for c in ctx.service_containers() if c.id not in leaving and c.running]
        if rolling_back:
            self.proxy.route_to(serving)
            concurrently(last_looks)
            return
        ctx.enter(Phase.PROXY)  # from here on an interrupt goes forward: the proxy may send nothing to the old ones
        ctx.display.show(containers, mark=Shown.DRAINING)
        self.proxy.route_to(serving, containers)
        self.proxy.drain(containers, ctx.options.drain_timeout)
        concurrently(last_looks)

"""The interface of a proxy driver: one per kind of proxy (haproxy.py, nginx.py)."""

from typing import Callable, Dict, List, Optional, Sequence

from docker_reroll.engine import Engine
from docker_reroll.processes import Result, Session
from docker_reroll.proxy import Backend, Route

# The line a session's command prints after each answer, with the answer's exit status: `<SESSION_END> <status>`.
SESSION_END = "-- docker-reroll: end of answer --"


class ProxyDriver:
    """What docker-reroll does with one kind of proxy (haproxy.py, nginx.py): its configuration at rest, made from
    the routes, and the moves of a deploy, each through Docker operations on the proxy's container only (`docker
    exec`, `docker cp`, `docker kill -s`), so that it works over `--context`, ssh and TLS as the rest does. `check`
    only reads (a dry run calls it)."""

    kind = ""

    def __init__(self, docker: Engine) -> None:
        self.docker = docker
        self._sessions: Dict[str, Session] = {}  # proxy container id -> the session its calls go through
        self._one_shot = False  # a session failed: one `docker exec` per call from then on

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

    def session_command(self) -> List[str]:
        """The command, run in the proxy's container, that answers a deploy's calls in one `docker exec`: it reads
        one line per call and prints the answer, then `<SESSION_END> <exit status>`."""
        raise NotImplementedError

    def ask(self, proxy_id: str, line: str, timeout: float, one_exec: Callable[[], Result]) -> Result:
        """The answer to one call (`line`) through the proxy's session, started with the first call: a few
        milliseconds each, where an exec of its own costs tens, and the engine's work of an exec. Once a session
        failed (it ended, or did not answer in time: an engine restart ends it), `one_exec` answers this call and
        every later one. Calls must be safe to make twice: a session that went quiet may have made it."""
        result = None if self._one_shot else self._session(proxy_id).ask(line, timeout)
        if result is None:
            self._one_shot = True
            self.close()
            result = one_exec()
        return result

    def _session(self, proxy_id: str) -> Session:
        if proxy_id not in self._sessions:
            self._sessions[proxy_id] = self.docker.exec_session(proxy_id, self.session_command(), SESSION_END)
        return self._sessions[proxy_id]

    def close(self) -> None:
        """The deploy is over: end the sessions with the proxies."""
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()

    def rest(self, proxy_id: str, route: Route) -> Optional[str]:
        """Back to routing by Docker's DNS, as the configuration at rest does (the deploy is over); what could not
        be, as a warning."""
        raise NotImplementedError

#!/usr/bin/env python3
"""HTTP load generator for docker-reroll's zero-downtime tests (standard library only).

N client threads, each with its own keep-alive ``http.client.HTTPConnection`` (a new one after any error), send
``GET <url>`` back to back, with no pause, and record every request: start and end time, HTTP status or error,
and from a 2xx body ``"<version> <hostname>"`` the version and the container that answered.

As a module::

    from loadgen import LoadGenerator
    with LoadGenerator("http://127.0.0.1:18080/", clients=8) as gen:
        gen.wait_for_requests(100)
        ...                       # deploy
    report = gen.report()
    assert report.failed == 0, report.summary()
    print(report.windows("host"))  # when each container served its first and last request

As a script::

    python3 tests/loadgen.py --url http://127.0.0.1:18080/ --clients 8 --duration 20

prints the one-line summary (and a timeline with ``--timeline``), exits 1 when a request failed. Ctrl-C or SIGTERM
stops it early and still prints the report.

With ``retry_idle_close=True`` (``--retry-idle-close``) a client behaves as curl, browsers, Go and urllib3 do: a
request sent on a REUSED keep-alive connection that the server closed before any byte of an answer (http.client's
``RemoteDisconnected``, or a reset while sending it) is sent once more on a fresh connection. The server never
answered it, so the retry is safe; it is how those clients ride out a proxy's reload closing idle connections.
Such retries are never hidden: each sample says whether it was retried and why, and the report counts them
(``report.retried``, ``retried=N`` in the summary). Without it (the default) every such request counts as failed.

Load is sent only to loopback addresses (127.0.0.0/8, ::1) unless ``allow_remote=True`` / ``--allow-remote``.
Every run is bounded: it stops by itself after ``max_duration`` seconds (default 300) or ``max_requests``.
"""
from __future__ import annotations

import argparse
import collections
import http.client
import ipaddress
import json
import signal
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional

__all__ = ["LoadGenerator", "LoadReport", "Sample", "Window", "now"]

_MONO0 = time.monotonic()
_WALL0 = time.time()


def now() -> float:
    """Wall-clock seconds (epoch) that never go back: the time base of every Sample.

    Compare with it, e.g. ``t = loadgen.now()`` before stopping a container, then ``report.windows()``.
    """
    return _WALL0 + (time.monotonic() - _MONO0)


class Sample(NamedTuple):
    """One request. ``status`` is None when there was no HTTP answer; ``error`` is None for an HTTP answer."""

    start: float
    end: float
    status: Optional[int]
    error: Optional[str]
    version: Optional[str]
    host: Optional[str]
    client: int
    retried: Optional[str] = None  # retry_idle_close: why the first attempt, on a reused connection, failed

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def reason(self) -> Optional[str]:
        """Why it failed ("HTTP 503", "timeout", "ConnectionResetError", ...), None when it did not."""
        if self.ok:
            return None
        if self.error is not None:
            return self.error
        return f"HTTP {self.status}"

    @property
    def latency(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Window:
    """Time span in which one version or one container answered: first request start .. last request end."""

    first: float
    last: float
    count: int

    @property
    def seconds(self) -> float:
        return self.last - self.first


class LoadReport:
    """What a load run saw. ``samples`` are sorted by start time."""

    def __init__(self, samples: Iterable[Sample], started: Optional[float] = None, stopped: Optional[float] = None):
        self.samples: List[Sample] = sorted(samples, key=lambda s: (s.start, s.end))
        self.started = started if started is not None else (self.samples[0].start if self.samples else 0.0)
        self.stopped = stopped if stopped is not None else (max((s.end for s in self.samples), default=self.started))
        self.total = len(self.samples)
        self.ok = sum(1 for s in self.samples if s.ok)
        self.failed = self.total - self.ok
        self.failures: Dict[str, int] = dict(collections.Counter(s.reason for s in self.samples if not s.ok))
        self.retries: Dict[str, int] = dict(collections.Counter(s.retried for s in self.samples if s.retried))
        self.retried = sum(self.retries.values())  # requests sent twice (retry_idle_close), whatever the outcome
        self.version_counts: Dict[str, int] = {}
        self.host_counts: Dict[str, int] = {}
        for s in self.samples:  # dicts keep insertion order: the order of first appearance
            if s.ok and s.version is not None:
                self.version_counts[s.version] = self.version_counts.get(s.version, 0) + 1
            if s.ok and s.host is not None:
                self.host_counts[s.host] = self.host_counts.get(s.host, 0) + 1
        self.versions: List[str] = list(self.version_counts)
        self.hosts: List[str] = list(self.host_counts)
        last = max((s for s in self.samples if s.ok and s.version is not None), key=lambda s: s.end, default=None)
        self.last_version: Optional[str] = last.version if last else None
        self.last_host: Optional[str] = last.host if last else None

    # -- views -------------------------------------------------------------------------------------------------
    @property
    def duration(self) -> float:
        return max(0.0, self.stopped - self.started)

    @property
    def rate(self) -> float:
        """Requests per second over the run."""
        return self.total / self.duration if self.duration > 0 else 0.0

    @property
    def failed_samples(self) -> List[Sample]:
        return [s for s in self.samples if not s.ok]

    def windows(self, key: str = "version") -> Dict[str, Window]:
        """For each version (``key="version"``) or container hostname (``key="host"``): when it was served.

        Only successful requests count. Ordered by first appearance.
        """
        if key not in ("version", "host"):
            raise ValueError("key must be 'version' or 'host'")
        out: Dict[str, list] = {}
        for s in self.samples:
            name = getattr(s, key)
            if not s.ok or name is None:
                continue
            w = out.get(name)
            if w is None:
                out[name] = [s.start, s.end, 1]
            else:
                w[0] = min(w[0], s.start)
                w[1] = max(w[1], s.end)
                w[2] += 1
        return {k: Window(*v) for k, v in out.items()}

    def window(self, version: Optional[str] = None, host: Optional[str] = None) -> Optional[Window]:
        """The serving window of one version or one host (host wins if both are given), None if never served."""
        if host is not None:
            return self.windows("host").get(host)
        if version is not None:
            return self.windows("version").get(version)
        raise ValueError("give a version or a host")

    def between(self, start: float, end: float) -> "LoadReport":
        """The requests that started in [start, end), as a report of their own."""
        return LoadReport((s for s in self.samples if start <= s.start < end), start, end)

    def latency_percentile(self, p: float) -> float:
        lat = sorted(s.latency for s in self.samples)
        if not lat:
            return 0.0
        i = min(len(lat) - 1, max(0, int(round(p / 100.0 * (len(lat) - 1)))))
        return lat[i]

    def summary(self) -> str:
        """One line: ``requests=1234 ok=1234 failed=0 versions=v1:600,v2:634`` (+ failures, rate, latency)."""
        versions = ",".join(f"{v}:{n}" for v, n in self.version_counts.items()) or "-"
        line = f"requests={self.total} ok={self.ok} failed={self.failed} versions={versions}"
        if self.failures:
            line += " failures=" + ",".join(f"{r}:{n}" for r, n in sorted(self.failures.items(), key=lambda x: -x[1]))
        if self.retried:
            line += f" retried={self.retried}(" + ",".join(f"{r}:{n}" for r, n in sorted(self.retries.items())) + ")"
        line += f" rps={self.rate:.0f} p99={self.latency_percentile(99) * 1000:.1f}ms"
        line += f" max={self.latency_percentile(100) * 1000:.1f}ms"
        return line

    def timeline(self, bucket: float = 1.0) -> str:
        """A text table, one line per ``bucket`` seconds: ok count per version, failures per reason."""
        if not self.samples:
            return "(no requests)"
        rows = []
        t = self.started
        samples = self.samples
        i = 0
        while t < self.stopped or i < len(samples):
            ok: Dict[str, int] = {}
            bad: Dict[str, int] = {}
            while i < len(samples) and samples[i].start < t + bucket:
                s = samples[i]
                if s.ok:
                    ok[s.version or "?"] = ok.get(s.version or "?", 0) + 1
                else:
                    bad[s.reason or "?"] = bad.get(s.reason or "?", 0) + 1
                i += 1
            cells = " ".join(f"{k}={n}" for k, n in ok.items()) or "-"
            if bad:
                cells += "  FAILED " + " ".join(f"{k}={n}" for k, n in bad.items())
            rows.append(f"{t - self.started:7.1f}s  {cells}")
            t += bucket
        return "\n".join(rows)

    def to_dict(self) -> dict:
        return {
            "total": self.total,
            "ok": self.ok,
            "failed": self.failed,
            "failures": self.failures,
            "retried": self.retried,
            "retries": self.retries,
            "versions": self.versions,
            "version_counts": self.version_counts,
            "last_version": self.last_version,
            "hosts": self.hosts,
            "host_counts": self.host_counts,
            "duration": round(self.duration, 3),
            "rps": round(self.rate, 1),
            "windows": {k: vars(w) for k, w in self.windows("version").items()},
            "host_windows": {k: vars(w) for k, w in self.windows("host").items()},
            "failed_samples": [s._asdict() for s in self.failed_samples[:200]],
        }

    def __repr__(self) -> str:
        return f"<LoadReport {self.summary()}>"


def _is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def _closed_unanswered(exc: BaseException, sent: bool) -> bool:
    """The server closed the connection before any byte of an answer: http.client's RemoteDisconnected (an empty
    status line), or a reset or broken pipe while the request was still being sent. A reset while an answer is
    read may come after part of it: that is not retried."""
    if isinstance(exc, http.client.RemoteDisconnected):
        return True
    return not sent and isinstance(exc, (ConnectionResetError, BrokenPipeError))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    return type(exc).__name__


class LoadGenerator:
    """Concurrent keep-alive HTTP clients hammering one URL until stopped (or max_duration / max_requests).

    ``start()`` then ``stop()`` (returns the LoadReport), or use it as a context manager; ``report()`` gives a
    snapshot while it runs and the final report after it stopped.
    """

    def __init__(
        self,
        url: str,
        clients: int = 8,
        timeout: float = 5.0,
        max_duration: float = 300.0,
        max_requests: Optional[int] = None,
        allow_remote: bool = False,
        rate: Optional[float] = None,
        retry_idle_close: bool = False,
        host_header: Optional[str] = None,
    ):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http://host[:port]/path URLs are supported, not {url!r}")
        if clients < 1:
            raise ValueError("clients must be at least 1")
        if not (0 < max_duration < float("inf")):
            raise ValueError("max_duration must be a finite number of seconds")
        if rate is not None and not rate > 0:
            raise ValueError("rate must be a positive number of requests per second")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not allow_remote and not _is_loopback(self.host):
            raise ValueError(f"{self.host} is not a loopback address: load may only target this machine")
        self.clients = clients
        self.timeout = timeout
        self.max_duration = max_duration
        self.max_requests = max_requests
        # Each client starts a request every clients/rate seconds (none sooner than its previous one ended).
        self.interval = clients / rate if rate else 0.0
        self.retry_idle_close = retry_idle_close
        self.host_header = host_header  # the Host a proxy routes by, when not the URL's
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._results: List[List[Sample]] = []
        self._count = 0  # approximate (unlocked) number of finished requests, for max_requests and waits
        self._ends: List[float] = []  # when each client thread ended
        self._started: Optional[float] = None
        self._stopped: Optional[float] = None
        self._final: Optional[LoadReport] = None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> "LoadGenerator":
        if self._threads:
            raise RuntimeError("already started")
        self._started = now()
        deadline = time.monotonic() + self.max_duration
        for i in range(self.clients):
            out: List[Sample] = []
            self._results.append(out)
            t = threading.Thread(target=self._client, args=(i, out, deadline), name=f"loadgen-{i}", daemon=True)
            self._threads.append(t)
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> LoadReport:
        """Stop the clients (each finishes its request in flight) and return the final report."""
        if self._final is not None:
            return self._final
        self._stop.set()
        join_by = time.monotonic() + self.timeout + 2.0
        for t in self._threads:
            t.join(max(0.0, join_by - time.monotonic()))
        # the run ended when its last client did (that may be before stop(): max_duration, max_requests)
        self._stopped = max(self._ends) if len(self._ends) == len(self._threads) else now()
        self._final = self.report()
        return self._final

    def __enter__(self) -> "LoadGenerator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def report(self) -> LoadReport:
        """The final report once stopped, else a snapshot of the requests finished so far."""
        if self._final is not None:
            return self._final
        samples: List[Sample] = []
        for out in self._results:
            samples.extend(list(out))  # list(...) copies atomically under the GIL
        return LoadReport(samples, self._started, self._stopped or now())

    def wait_for(self, predicate: Callable[[LoadReport], bool], timeout: float, poll: float = 0.05) -> bool:
        """Poll ``predicate(snapshot)`` until true (True) or until ``timeout`` seconds (False)."""
        end = time.monotonic() + timeout
        while True:
            if predicate(self.report()):
                return True
            if time.monotonic() >= end or not self.running:
                return predicate(self.report())
            time.sleep(poll)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` requests have finished (of any outcome)."""
        end = time.monotonic() + timeout
        while self._count < count:
            if time.monotonic() >= end or not self.running:
                return self._count >= count
            time.sleep(0.02)
        return True

    # -- the client loop ---------------------------------------------------------------------------------------
    def _client(self, index: int, out: List[Sample], deadline: float) -> None:
        conn: Optional[http.client.HTTPConnection] = None
        answered = 0  # responses read on `conn`: a request on it after one reuses the connection
        headers = {"User-Agent": "reroll-loadgen", "Accept": "text/plain"}
        if self.host_header:
            headers["Host"] = self.host_header
        # Paced clients start spread over one interval, so the load is even rather than in bursts.
        next_start = time.monotonic() + self.interval * index / self.clients
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self.interval:
                if self._stop.wait(max(0.0, next_start - time.monotonic())):
                    break
                next_start = max(next_start + self.interval, time.monotonic())
            if self.max_requests is not None and self._count >= self.max_requests:
                break
            start = now()
            retried = None
            while True:
                if conn is None:
                    conn, answered = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout), 0
                status = error = version = host = None
                reused, sent = answered > 0, False
                try:
                    conn.request("GET", self.path, headers=headers)
                    sent = True
                    resp = conn.getresponse()
                    body = resp.read()
                    status = resp.status
                    answered += 1
                    if resp.will_close:
                        conn.close()
                        conn = None
                    if 200 <= status < 300:
                        words = body.decode("utf-8", "replace").split()
                        version = words[0] if words else None
                        host = words[1] if len(words) > 1 else None
                except Exception as exc:  # OSError, HTTPException, anything else: a failed request, never a dead client
                    error = _describe(exc)
                    if conn is not None:
                        conn.close()
                    conn = None
                    if self.retry_idle_close and retried is None and reused and _closed_unanswered(exc, sent):
                        retried = error  # the server never answered it: once more, on a fresh connection
                        continue
                break
            out.append(Sample(start, now(), status, error, version, host, index, retried))
            self._count += 1
        if conn is not None:
            conn.close()
        self._ends.append(now())


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080/")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rate", type=float, default=None, help="requests per second in all (default: as fast as it goes)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds to run (at most --max-duration)")
    ap.add_argument("--max-duration", type=float, default=300.0)
    ap.add_argument("--max-requests", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=5.0, help="per-request socket timeout (s)")
    ap.add_argument("--timeline", type=float, default=0.0, metavar="SECONDS", help="print a timeline per bucket")
    ap.add_argument("--json", metavar="FILE", help="write the report as JSON ('-' for stdout)")
    ap.add_argument("--allow-remote", action="store_true", help="allow a non-loopback target")
    ap.add_argument("--retry-idle-close", action="store_true",
                    help="retry once, on a fresh connection, a request whose reused connection was closed before "
                         "any answer (as curl, browsers and Go do); counted as retried")
    args = ap.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    # reset explicitly: a background job started with '&' from a script inherits "SIGINT ignored"
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    gen = LoadGenerator(args.url, clients=args.clients, timeout=args.timeout,
                        max_duration=min(args.duration, args.max_duration), max_requests=args.max_requests,
                        allow_remote=args.allow_remote, rate=args.rate, retry_idle_close=args.retry_idle_close)
    gen.start()
    while not stop.is_set() and gen.running:
        stop.wait(0.1)
    report = gen.stop()
    if args.timeline:
        print(report.timeline(args.timeline))
    if args.json:
        data = json.dumps(report.to_dict(), indent=1)
        if args.json == "-":
            print(data)
        else:
            with open(args.json, "w") as f:
                f.write(data + "\n")
    for name, w in report.windows("host").items():
        print(f"host {name}: {w.count} ok from +{w.first - report.started:.3f}s to +{w.last - report.started:.3f}s")
    print(report.summary(), flush=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())

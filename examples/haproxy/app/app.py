#!/usr/bin/env python3
"""Example HTTP app for docker-reroll's end-to-end tests (standard library only).

GET /        200 "<APP_VERSION> <hostname>\n"   (always served, also while not ready)
GET /health  200 "ok" when ready, else 503 with the reason: "starting" (APP_STARTUP_DELAY seconds after start),
             "draining" (the file /.dead exists), "broken" (APP_BROKEN=1), "stopping" (SIGTERM received)

It listens at once on start: HAProxy 2.6 puts a server learned from DNS in service before its first check, so an
app that is not listening yet would get refused connections; readiness is only ever told through /health.

SIGTERM/SIGINT: with APP_LAME_DUCK=N, first N seconds of a lame duck (/health answers 503 "stopping", requests are
still served: for Swarm, which has no pre-stop hook and sends SIGTERM as soon as a replacement runs); then close the
listening socket (no new connections), let requests already read finish (answered with
"Connection: close"), drop idle keep-alive connections, exit; bounded by APP_SHUTDOWN_GRACE (default 5 s), well under
compose's 10 s stop timeout.

Docker's health check (/usr/local/bin/healthcheck) asks /health too, and can also fail on its own: with
APP_DOCKER_CHECK_FAILS_AFTER=N the app writes /tmp/docker-check-fails N seconds after start and Docker's check fails
from then on, while /health (what HAProxy checks) stays 200, like a deeper dependency check that only Docker runs.

GET /stream?seconds=N  a line "<APP_VERSION> <hostname> <i>" every 0.5 s for N seconds (chunked): a long-lived response

With APP_EXIT_AT_ONCE=1 the app ends the moment it gets SIGTERM, requests in flight and all, as many apps do (no
signal handler of their own); with APP_MODE=tcp-echo it is a raw TCP line-echo server on APP_PORT instead
("<APP_VERSION> <hostname> <line>" for each line), for the TCP route of proxy mode.

Environment: APP_VERSION (v1), APP_STARTUP_DELAY (0), APP_BROKEN (0), APP_RESPONSE_DELAY (0, seconds added to GET /),
APP_PORT (8080), APP_DEAD_FILE (/.dead), APP_SHUTDOWN_GRACE (5), APP_DOCKER_CHECK_FAILS_AFTER (unset),
APP_FAIL_FILE (unset: Docker's check also fails while this file exists, a switch for tests), APP_LAME_DUCK (0),
APP_EXIT_AT_ONCE (0), APP_MODE (http or tcp-echo).
"""
import os
import select
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _env_float(name, default):
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return float(default)


VERSION = os.environ.get("APP_VERSION", "") or "v1"
STARTUP_DELAY = _env_float("APP_STARTUP_DELAY", 0)
BROKEN = os.environ.get("APP_BROKEN", "0").strip().lower() not in ("", "0", "false", "no", "off")
RESPONSE_DELAY = _env_float("APP_RESPONSE_DELAY", 0)
PORT = int(os.environ.get("APP_PORT", "") or 8080)
DEAD_FILE = os.environ.get("APP_DEAD_FILE", "") or "/.dead"
SHUTDOWN_GRACE = _env_float("APP_SHUTDOWN_GRACE", 5)
LAME_DUCK = _env_float("APP_LAME_DUCK", 0)
DOCKER_CHECK_FAILS_AFTER = _env_float("APP_DOCKER_CHECK_FAILS_AFTER", -1)
DOCKER_CHECK_FAIL_FILE = "/tmp/docker-check-fails"
EXIT_AT_ONCE = os.environ.get("APP_EXIT_AT_ONCE", "0").strip().lower() not in ("", "0", "false", "no", "off")
MODE = os.environ.get("APP_MODE", "") or "http"
HOSTNAME = socket.gethostname()
STARTED = time.monotonic()

stopping = threading.Event()


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} app {VERSION} {HOSTNAME}: {msg}", flush=True)


_last_state = [None]


def readiness():
    """Return the reason the app is not ready, or "ok"."""
    if stopping.is_set():
        state = "stopping"
    elif BROKEN:
        state = "broken"
    elif os.path.exists(DEAD_FILE):
        state = "draining"
    elif time.monotonic() - STARTED < STARTUP_DELAY:
        state = "starting"
    else:
        state = "ok"
    if state != _last_state[0]:
        _last_state[0] = state
        log(f"health is now {state}")
    return state


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.idle = set()      # sockets of keep-alive connections waiting for their next request
        self.dropped = set()   # idle sockets shut down by the drain
        self.busy = 0          # requests read and not yet answered
        self.closing = False   # idle connections have been dropped: no further request is taken

    def drop_idle(self):
        """Shut down keep-alive connections that wait for a request; spare those whose request has just arrived."""
        with self.lock:
            self.closing = True
            for sock in list(self.idle):
                try:
                    if select.select([sock], [], [], 0)[0]:
                        continue  # bytes (or EOF) pending: its handler reads and answers it ("Connection: close")
                    self.dropped.add(sock)
                    sock.shutdown(socket.SHUT_RDWR)
                except (OSError, ValueError):
                    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive (every answer has a Content-Length)
    server_version = "reroll-example"
    sys_version = ""
    disable_nagle_algorithm = True  # headers and body are two writes: avoid Nagle/delayed-ACK stalls
    timeout = 120                   # an idle client connection is closed after this long

    def handle_one_request(self):
        srv = self.server
        with srv.lock:
            if srv.closing:
                self.close_connection = True
                return
            srv.idle.add(self.connection)
        try:
            line = self.rfile.readline(65537)
        except OSError:
            line = b""
        with srv.lock:
            srv.idle.discard(self.connection)
            if not line or self.connection in srv.dropped:
                srv.dropped.discard(self.connection)
                self.close_connection = True
                return
            srv.busy += 1
        try:
            self.raw_requestline = line
            if len(line) > 65536:
                self.send_error(414)
                return
            if not self.parse_request():
                return
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.send_error(501, f"Unsupported method ({self.command!r})")
                return
            method()
            self.wfile.flush()
        except (TimeoutError, OSError):
            self.close_connection = True
        finally:
            with srv.lock:
                srv.busy -= 1

    def reply(self, code, body, head=False):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def do_GET(self, head=False):
        path = self.path.split("?", 1)[0]
        if path == "/health":
            state = readiness()
            self.reply(200 if state == "ok" else 503, state + "\n", head)
        elif path == "/":
            if RESPONSE_DELAY > 0:
                time.sleep(RESPONSE_DELAY)
            self.reply(200, f"{VERSION} {HOSTNAME}\n", head)
        elif path == "/stream":
            self.stream(self.path.partition("seconds=")[2])
        else:
            self.reply(404, "not found\n", head)

    def stream(self, seconds):
        """Chunked lines for `seconds` (default 5): a response that stays open across a deploy."""
        try:
            duration = float(seconds or 5)
        except ValueError:
            duration = 5.0
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        ends = time.monotonic() + duration
        count = 0
        while time.monotonic() < ends:
            line = f"{VERSION} {HOSTNAME} {count}\n".encode()
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()
            count += 1
            time.sleep(0.5)
        self.wfile.write(b"0\r\n\r\n")

    def do_HEAD(self):
        self.do_GET(head=True)

    def log_message(self, format, *args):  # no access log: the load tests send hundreds of requests a second
        pass


def echo_main():
    """APP_MODE=tcp-echo: each line a client sends comes back as "<version> <hostname> <line>"."""
    import socketserver

    class Echo(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(f"{VERSION} {HOSTNAME} ".encode() + line)

    class EchoServer(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    log(f"tcp line-echo on :{PORT}")
    EchoServer(("0.0.0.0", PORT), Echo).serve_forever()


def main():
    if MODE == "tcp-echo":
        return echo_main()
    server = Server(("0.0.0.0", PORT), Handler)

    def on_signal(signum, _frame):
        if EXIT_AT_ONCE:  # no graceful anything: what is in flight is lost, as with an app that handles no signal
            os._exit(0)
        if stopping.is_set():
            return
        stopping.set()
        log(f"got {signal.Signals(signum).name}: draining")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    loop.start()
    log(f"listening on :{PORT} (startup delay {STARTUP_DELAY:g}s, broken={BROKEN})")
    readiness()
    while not stopping.wait(0.2):  # a timed wait keeps the main thread responsive to signals
        readiness()
        if 0 <= DOCKER_CHECK_FAILS_AFTER <= time.monotonic() - STARTED and not os.path.exists(DOCKER_CHECK_FAIL_FILE):
            open(DOCKER_CHECK_FAIL_FILE, "w").close()
            log("Docker's health check fails from now on (APP_DOCKER_CHECK_FAILS_AFTER)")

    if LAME_DUCK > 0:  # Swarm has no pre-stop hook: fail /health first, serve on until the proxy has noticed
        log(f"lame duck for {LAME_DUCK:g}s: /health says stopping, requests are still served")
        time.sleep(LAME_DUCK)
    t0 = time.monotonic()
    server.shutdown()        # stop the accept loop ...
    server.server_close()    # ... and close the listening socket: new connections are refused
    deadline = t0 + SHUTDOWN_GRACE
    server.drop_idle()       # idle keep-alive connections: close them, their reader sees EOF
    while time.monotonic() < deadline:
        with server.lock:
            if server.busy == 0:
                break
        time.sleep(0.01)
    with server.lock:
        left = server.busy
    log(f"stopped in {time.monotonic() - t0:.3f}s" + (f", {left} request(s) cut" if left else ""))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()

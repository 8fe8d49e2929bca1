"""The load generator's client that retries as curl, browsers and Go do (retry_idle_close): against a local server
that misbehaves in one exact way each, it retries only a request on a reused connection closed before any answer,
once, and counts every retry; the strict default counts that request as failed."""

import socket
import threading

import pytest

from loadgen import LoadGenerator

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: keep-alive\r\n\r\nv1 host\n"


def read_request(conn: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return False
        data += chunk
    return True


@pytest.fixture
def server():
    """A server answering `answered` requests per connection, then doing `then` with the next one: "close" (read
    it, close without a byte: what a proxy's reload does to an idle keep-alive connection), "half" (part of an
    answer, then close)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    how = {"answered": 1, "then": "close"}

    def serve(conn: socket.socket) -> None:
        with conn:
            for _ in range(how["answered"]):
                if not read_request(conn):
                    return
                conn.sendall(OK)
            if read_request(conn) and how["then"] == "half":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nv1")

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/", how
    listener.close()


def run(url: str, **options):
    load = LoadGenerator(url, clients=2, max_requests=40, max_duration=20, timeout=2, **options)
    load.start()
    load.wait_for(lambda report: report.total >= 40, timeout=20)
    return load.stop()


def test_the_strict_client_counts_a_request_on_a_closed_keep_alive_connection_as_failed(server):
    url, _ = server
    report = run(url)
    assert report.ok > 0 and report.failed > 0 and report.failures == {"RemoteDisconnected": report.failed}
    assert report.retried == 0 and "retried" not in report.summary()


def test_the_retrying_client_sends_such_a_request_again_on_a_fresh_connection_and_counts_it(server):
    url, _ = server
    report = run(url, retry_idle_close=True)
    assert report.failed == 0 and report.ok == report.total
    retried = [s for s in report.samples if s.retried]
    assert report.retried == len(retried) > 0 and report.retries == {"RemoteDisconnected": len(retried)}
    assert f" retried={len(retried)}(RemoteDisconnected:{len(retried)})" in report.summary()
    assert report.to_dict()["retried"] == len(retried)


def test_a_first_request_on_a_fresh_connection_and_a_half_answer_are_never_retried(server):
    url, how = server
    how["answered"] = 0  # no connection is ever reused
    report = run(url, retry_idle_close=True)
    assert report.ok == 0 and report.failures == {"RemoteDisconnected": report.total} and report.retried == 0
    how["answered"], how["then"] = 1, "half"  # part of an answer came: the server may have acted on it
    report = run(url, retry_idle_close=True)
    assert report.failed > 0 and report.retried == 0
    assert set(report.failures) <= {"IncompleteRead", "ConnectionResetError"}, report.failures

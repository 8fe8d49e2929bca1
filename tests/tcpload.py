"""Line clients for a TCP service behind a proxy (standard library only): each holds a connection for a while
(the clients' connections spread over that time), sends a numbered line at a steady pace, and checks that every
line comes back echoed ("<version> <host> <line>", the example app's tcp-echo mode); then it opens a new
connection. Every connection is recorded; one that could not be opened, ended early, or lost or garbled a line
failed.

    with LineClients("127.0.0.1", 18080, clients=4, hold=1.0) as load:
        ...                                   # deploy
    assert not load.failed(), load.failed()
"""

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import List, Optional, Set


@dataclass
class Connection:
    client: int
    started: float
    ended: float = 0.0
    sent: int = 0
    answered: int = 0
    error: Optional[str] = None  # why it failed: "refused", "EOF", "timeout", "garbled", ...
    hosts: Set[str] = field(default_factory=set)  # the containers that answered its lines

    @property
    def ok(self) -> bool:
        return self.error is None and self.answered == self.sent


class LineClients:
    def __init__(self, host: str, port: int, clients: int = 4, hold: float = 1.0, every: float = 0.1,
                 timeout: float = 5.0, max_duration: float = 300.0) -> None:
        self.address = (host, port)
        self.clients, self.hold, self.every, self.timeout = clients, hold, every, timeout
        self.max_duration = max_duration
        self.connections: List[Connection] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> "LineClients":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> List[Connection]:
        """Each client closes the connection it holds (after the line it waits for), then stops."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.every + self.timeout + 5)
        return self.connections

    def failed(self) -> List[Connection]:
        return [c for c in self.connections if not c.ok]

    def done(self) -> int:
        return sum(1 for c in self.connections if c.ended)

    def _client(self, index: int) -> None:
        deadline = time.monotonic() + self.max_duration
        if self._stop.wait(self.hold * index / self.clients):  # spread: connections end at any moment, not at once
            return
        while not self._stop.is_set() and time.monotonic() < deadline:
            record = Connection(index, time.time())
            self.connections.append(record)
            self._hold(record)
            record.ended = time.time()

    def _hold(self, record: Connection) -> None:
        try:
            with socket.create_connection(self.address, timeout=self.timeout) as sock:
                reader = sock.makefile("rb")
                ends = time.monotonic() + self.hold
                while True:  # at least one line; then until the hold time is up, or the load stops
                    line = f"client {record.client} line {record.sent}"
                    sock.sendall(line.encode() + b"\n")
                    record.sent += 1
                    answer = reader.readline().decode(errors="replace")
                    if not answer:
                        record.error = "EOF"
                        return
                    words = answer.split(" ", 2)
                    if len(words) < 3 or words[2].rstrip("\n") != line:
                        record.error = f"garbled: {answer!r}"
                        return
                    record.answered += 1
                    record.hosts.add(words[1])
                    if time.monotonic() >= ends or self._stop.wait(self.every):
                        return
        except socket.timeout:
            record.error = "timeout"
        except OSError as error:
            record.error = type(error).__name__

"""Turn SIGINT/SIGTERM/SIGHUP and the docker CLI's cancel into a flag the deploy checks at safe points.

Handlers only record what happened: the deploy decides what an interrupt means in the phase it is in (roll back
before the first pre-stop command, roll forward after). Child processes run in their own sessions, so a terminal's
Ctrl-C reaches only this process and the deploy stays in charge of stopping compose cleanly.
"""

import signal
import socket
import threading
import time
from typing import List, Mapping, Optional

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# The docker CLI closes the plugin socket when it is itself signalled and stdout is not a terminal; it does not say
# which signal, so we report it as the polite one.
PLUGIN_CANCEL_SIGNAL = signal.SIGTERM
PLUGIN_SOCKET_ENV = "DOCKER_CLI_PLUGIN_SOCKET"
POLL_SECONDS = 0.05  # how soon a wait notices an interrupt


class Interrupts:
    def __init__(self) -> None:
        self._received: List[int] = []  # appended by signal handlers: no locks there, they could deadlock
        self._previous: dict = {}

    @property
    def first_signal(self) -> Optional[int]:
        return self._received[0] if self._received else None

    @property
    def count(self) -> int:
        return len(self._received)

    def requested(self) -> bool:
        return bool(self._received)

    def sleep(self, seconds: float) -> bool:
        """Sleep, but wake at once on an interrupt. True if the full time passed."""
        deadline = time.monotonic() + seconds
        seen = self.count
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            time.sleep(min(remaining, POLL_SECONDS))
            if self.count != seen:
                return False

    def record(self, signum: int) -> None:
        self._received.append(signum)

    def install(self, environ: Mapping[str, str]) -> None:
        for signum in HANDLED_SIGNALS:
            # A script's background job starts with SIGINT ignored; set our handler regardless.
            self._previous[signum] = signal.signal(signum, self._on_signal)
        address = environ.get(PLUGIN_SOCKET_ENV)
        if address:
            threading.Thread(target=self._watch_plugin_socket, args=(address,), daemon=True).start()

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.record(signum)

    def _watch_plugin_socket(self, address: str) -> None:
        """Hold the CLI's socket open; when the CLI closes it, the user wants the plugin to stop."""
        path = "\0" + address[1:] if address.startswith("@") else address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.connect(path)
                while connection.recv(4096):
                    pass
        except OSError:
            return  # no socket to watch: signals still work
        # A Ctrl-C to the whole process group reaches us and makes the CLI close the socket: one interrupt, not two.
        if not self._received:
            self.record(PLUGIN_CANCEL_SIGNAL)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"

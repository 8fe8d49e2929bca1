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
SAME_INTERRUPT = 2.0  # a signal this soon after the CLI's cancel is the cause of that cancel, not a second interrupt


class Interrupts:
    def __init__(self) -> None:
        self._received: List[int] = []
        # The signal handler (main thread) and the socket watcher (its own thread) both record. Re-entrant: a
        # second signal's handler may run inside the first one's, in the same thread, and must not deadlock.
        self._lock = threading.RLock()
        self._previous: dict = {}
        self._socket_cancel_at: Optional[float] = None  # when the CLI's cancel was recorded, until a signal says why

    @property
    def first_signal(self) -> Optional[int]:
        return self._received[0] if self._received else None

    @property
    def count(self) -> int:
        return len(self._received)

    def requested(self) -> bool:
        return bool(self._received)

    def sleep(self, seconds: float, interrupts_seen: Optional[int] = None) -> bool:
        """Sleep, but wake on an interrupt beyond the first `interrupts_seen` (default: any new one).
        True if the full time passed."""
        deadline = time.monotonic() + seconds
        seen = self.count if interrupts_seen is None else interrupts_seen
        while True:
            if self.count > seen:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            time.sleep(min(remaining, POLL_SECONDS))

    def record(self, signum: int) -> None:
        """A signal. If the CLI's cancel came just before it, both are the same interrupt (a Ctrl-C to the process
        group reaches the CLI, which closes our socket, and us, whose handler may run a little later): the signal
        replaces the cancel instead of counting as a second interrupt."""
        with self._lock:
            cancel_at = self._socket_cancel_at
            if cancel_at is not None and len(self._received) == 1 and time.monotonic() - cancel_at < SAME_INTERRUPT:
                self._socket_cancel_at = None
                self._received[0] = signum
                return
            self._received.append(signum)

    def record_cli_cancel(self) -> None:
        """The docker CLI closed the plugin socket: it was signalled. A signal we got too already counts."""
        with self._lock:
            if not self._received:
                self._socket_cancel_at = time.monotonic()
                self._received.append(PLUGIN_CANCEL_SIGNAL)

    def install(self, environ: Mapping[str, str]) -> None:
        for signum in HANDLED_SIGNALS:
            # `nohup docker reroll ...` means: survive the hang-up, so an ignored SIGHUP stays ignored. A script's
            # background job starts with SIGINT ignored too, but that is not a request: handle SIGINT regardless.
            if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                continue
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
        self.record_cli_cancel()


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"

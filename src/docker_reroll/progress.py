"""The only place that writes user-facing lines: timestamped progress on stderr.

Lines look like the original tool's, `2024-06-15T07:38:01.187563Z INFO scaling web from 1 to 2 containers`, so
deploy logs read the same. Another output style (JSON lines, a TTY view) is one more class with these methods.
"""

import sys
import threading
from datetime import datetime, timezone
from typing import Optional, TextIO


class Progress:
    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()  # pre-stop commands report from worker threads
        self._broken = False

    def info(self, message: str) -> None:
        self._line("INFO", message)

    def warn(self, message: str) -> None:
        self._line("WARN", message)

    def error(self, message: str) -> None:
        self._line("ERROR", message)

    def detail(self, title: str, text: str) -> None:
        """Multi-line diagnostics (health-check output, log tails), indented under one timestamped line."""
        body = "\n".join("    " + line for line in text.rstrip().splitlines()) or "    (empty)"
        self._line("INFO", f"{title}:\n{body}")

    def _line(self, level: str, message: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self._lock:
            if self._broken:
                return
            try:
                self._stream.write(f"{stamp} {level} {message}\n")
                self._stream.flush()
            except (OSError, ValueError):
                # A closed pipe or a hung-up terminal (EIO) must never stop a deploy half-way: go on silently.
                self._broken = True

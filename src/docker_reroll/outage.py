"""When the engine stops answering in the middle of a deploy (a restarting dockerd: an upgrade, `live-restore`
off; a dropped ssh tunnel), its silence says nothing about the containers: the deploy waits for it, a bounded
time, and then goes on from what the engine shows, instead of taking "cannot connect" for a failed container."""

import threading
import time
from typing import Callable

from docker_reroll.interrupts import Interrupts
from docker_reroll.progress import Progress

ENGINE_RETURN_SECONDS = 60.0  # a dockerd restart takes seconds; an upgrade with many containers, tens of seconds
ENGINE_POLL_SECONDS = 0.5


class EngineWait:
    """`Docker.await_engine`: called (from any thread) with the CLI's error when the engine did not answer;
    returns True once it answers again, False when it did not within the bound or an interrupt came."""

    def __init__(self, answers: Callable[[], bool], progress: Progress, interrupts: Interrupts,
                 seconds: float = ENGINE_RETURN_SECONDS) -> None:
        self._answers = answers
        self._progress = progress
        self._interrupts = interrupts
        self._seconds = seconds
        self._lock = threading.Lock()  # concurrent calls that fail together wait together: one says it
        self.outages = 0

    def __call__(self, error: str) -> bool:
        with self._lock:
            if self._answers():
                return True  # another thread waited it out already
            self.outages += 1
            self._progress.warn(f"the Docker engine does not answer ({error}): waiting up to {self._seconds:g}s "
                                "for it to come back")
            started = time.monotonic()
            seen = self._interrupts.count
            while time.monotonic() - started < self._seconds:
                if not self._interrupts.sleep(ENGINE_POLL_SECONDS, interrupts_seen=seen):
                    self._progress.warn("interrupted while waiting for the Docker engine")
                    return False
                if self._answers():
                    self._progress.info(f"the Docker engine answers again after {time.monotonic() - started:.1f}s: "
                                        "going on from what it shows")
                    return True
            self._progress.error(f"the Docker engine did not come back within {self._seconds:g}s")
            return False

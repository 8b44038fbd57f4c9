"""The worker's heartbeat thread: who it is, what it serves and what it is doing right now.

The keys and their readers are `generations.workers`; this thread only keeps writing them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from generations.workers import erase_heartbeat, write_heartbeat


class Heartbeat:
    def __init__(self, name: str, info: dict[str, Any]) -> None:
        self.name = name
        self.info = dict(info)
        self.current_jobs: list[str] = []  # a batch runs several at once
        self._stop = threading.Event()
        self._due = threading.Event()  # beat now, not at the next interval
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        state = {**self.info, "current_jobs": self.current_jobs}
        write_heartbeat(self.name, state, self.info.get("pools", []), at=time.time())

    def beat_quietly(self) -> None:
        with contextlib.suppress(RedisError):
            self.beat()

    def wake(self) -> None:
        """Beat soon, on the heartbeat's own thread: a job's start or end reaches the heartbeat
        within moments without a Redis round trip on the job's path. The dispatcher looks for
        lost jobs only among those started more than a heartbeat TTL ago, and beats come every
        third of it anyway."""
        self._due.set()

    def stop(self) -> None:
        self._stop.set()
        self._due.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(RedisError):  # else the key expires by itself
            erase_heartbeat(self.name, self.info.get("pools", []))

    def _run(self) -> None:
        interval = max(0.5, settings.ATELIER_HEARTBEAT_TTL / 3)
        while True:
            self._due.wait(interval)
            self._due.clear()
            if self._stop.is_set():
                return
            self.beat_quietly()  # Redis away for a moment: try again next beat

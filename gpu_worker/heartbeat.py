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

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(RedisError):  # else the key expires by itself
            erase_heartbeat(self.name, self.info.get("pools", []))

    def _run(self) -> None:
        interval = max(0.5, settings.ATELIER_HEARTBEAT_TTL / 3)
        while not self._stop.wait(interval):
            self.beat_quietly()  # Redis away for a moment: try again next beat

"""The worker's heartbeat in Redis: who it is, what it serves and what it is doing right now.

The dispatcher's reconciler treats a running job whose worker has no heartbeat as lost.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from generations.queues import pool_workers_key, redis_client

HEARTBEAT_PREFIX = "atelier:worker:"


def heartbeat_key(name: str) -> str:
    return HEARTBEAT_PREFIX + name


def is_alive(name: str) -> bool:
    return bool(name) and bool(redis_client().exists(heartbeat_key(name)))


def is_running(name: str, generation_id: str) -> bool:
    """Whether worker ``name`` is alive and says it is running this generation."""
    raw = redis_client().get(heartbeat_key(name)) if name else None
    if raw is None:
        return False
    return generation_id in (json.loads(raw).get("current_jobs") or [])


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
        now = time.time()
        state = {**self.info, "current_jobs": self.current_jobs, "at": now}
        pipe = redis_client().pipeline()
        pipe.set(heartbeat_key(self.name), json.dumps(state), ex=settings.ATELIER_HEARTBEAT_TTL)
        for pool in self.info.get("pools", []):
            pipe.zadd(pool_workers_key(pool), {self.name: now})
            pipe.zremrangebyscore(pool_workers_key(pool), "-inf", now - 3600)
        pipe.execute()

    def beat_quietly(self) -> None:
        with contextlib.suppress(RedisError):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(RedisError):  # else the key expires by itself
            self._forget()

    def _forget(self) -> None:
        pipe = redis_client().pipeline()
        pipe.delete(heartbeat_key(self.name))
        for pool in self.info.get("pools", []):
            pipe.zrem(pool_workers_key(pool), self.name)
        pipe.execute()

    def _run(self) -> None:
        interval = max(0.5, settings.ATELIER_HEARTBEAT_TTL / 3)
        while not self._stop.wait(interval):
            self.beat_quietly()  # Redis away for a moment: try again next beat

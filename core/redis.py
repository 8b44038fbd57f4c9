"""The process's one Redis client: queues, the channel layer's neighbours, counters, flags.

Every reply has a deadline (REDIS_SOCKET_TIMEOUT, REDIS_CONNECT_TIMEOUT): a slow Redis makes a
request fail with a TimeoutError, which the web tier answers 503 overloaded, instead of holding its
thread without a bound. Nothing here blocks on purpose (the RQ worker has its own connection)."""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
    )

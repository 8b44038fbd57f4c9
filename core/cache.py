"""Django's cache, in Redis: allauth keeps its rate-limit counters (password reset mails, guesses
at a second factor) and its marks of spent authenticator codes there, so that every web process
counts and remembers the same. Should Redis be away, a read finds nothing and a write is dropped:
sign-in keeps working, as with the sign-in lockout (accounts/throttle.py)."""

from __future__ import annotations

import contextlib
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError


class LenientRedisCache(RedisCache):
    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        try:
            return super().get(key, default, version)
        except RedisError:
            return default

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        try:
            return bool(super().add(key, value, timeout, version))
        except RedisError:
            return True  # as if added: allauth waits in a loop for an add that succeeds

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        with contextlib.suppress(RedisError):
            super().set(key, value, timeout, version)

    def delete(self, key: Any, version: int | None = None) -> bool:
        try:
            return bool(super().delete(key, version))
        except RedisError:
            return False

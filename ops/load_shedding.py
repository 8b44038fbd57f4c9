"""Shedding load in the web tier instead of piling up threads (docs/operations.md).

``LoadSheddingMiddleware``, first in ``MIDDLEWARE``: a process serves at most
``ATELIER_WEB_MAX_CONCURRENCY`` requests at once; up to ``ATELIER_WEB_MAX_WAITING`` more wait for
a slot for at most ``ATELIER_WEB_QUEUE_SECONDS``, and the rest are answered at once with
``503 overloaded`` and ``Retry-After``. Under daphne the limit is an asyncio semaphore held before
the request gets a thread; under gunicorn a threading one. Health probes and ``/metrics`` pass.

``DependencyTimeoutMiddleware``, right inside the request log: a request that failed because the
database or Redis did not answer in time (a statement or lock timeout, a socket timeout, a refused
connection) is answered ``503 overloaded`` with ``Retry-After`` instead of a 500.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.signals import got_request_exception
from django.db import OperationalError
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import error_body
from core.redis import redis_client

SHED_KEY = "atelier:shed"  # a hash of counters by reason: concurrency, database, redis
FLUSH_SECONDS = 1.0
EXEMPT_PATHS = ("/healthz", "/readyz", "/metrics")
OVERLOAD_ATTRIBUTE = "_atelier_overloaded_by"


class Shedding:
    """This process's shed requests: counted for /metrics, remembered for /readyz."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: Counter[str] = Counter()
        self.last_at: float | None = None
        self.flushed_at = time.monotonic()
        self.in_flight = 0
        self.waiting = 0

    def record(self, reason: str) -> None:
        with self.lock:
            self.pending[reason] += 1
            self.last_at = time.monotonic()
            due = self.last_at - self.flushed_at >= FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, Counter()
            self.flushed_at = time.monotonic()
        if not pending:
            return
        try:
            pipe = redis_client().pipeline(transaction=False)
            for reason, count in pending.items():
                pipe.hincrby(SHED_KEY, reason, count)
            pipe.execute()
        except RedisError:
            with self.lock:  # kept for the next flush: Redis may be the reason we shed
                self.pending.update(pending)

    def recently(self) -> float | None:
        """Seconds since this process last shed a request, when within the degraded window."""
        with self.lock:
            if self.last_at is None:
                return None
            ago = time.monotonic() - self.last_at
        return ago if ago <= settings.ATELIER_SHED_DEGRADED_SECONDS else None


shedding = Shedding()


def shed_counts() -> dict[str, int]:
    """Requests shed by every web process, by reason."""
    shedding.flush()
    counts = {"concurrency": 0, "database": 0, "redis": 0}
    counts.update({key.decode(): int(value) for key, value in redis_client().hgetall(SHED_KEY).items()})
    return counts


def overloaded(reason: str) -> JsonResponse:
    shedding.record(reason)
    retry_after = settings.ATELIER_OVERLOAD_RETRY_AFTER
    message = f"The service is busy; try again in {retry_after} seconds."
    body = error_body("overloaded", message, {"reason": reason, "retry_after": retry_after})
    response = JsonResponse(body, status=503)
    response["Retry-After"] = str(retry_after)
    return response


class LoadSheddingMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.limit = settings.ATELIER_WEB_MAX_CONCURRENCY
        self.max_waiting = settings.ATELIER_WEB_MAX_WAITING
        self.wait = settings.ATELIER_WEB_QUEUE_SECONDS
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        self.slots: asyncio.Semaphore | None = None  # made on the server's loop
        self.thread_slots = threading.BoundedSemaphore(max(self.limit, 1))

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        if not self.limit or request.path.startswith(EXEMPT_PATHS):
            return self.get_response(request)
        if not self.enter_thread():
            return overloaded("concurrency")
        try:
            return self.get_response(request)
        finally:
            self.thread_slots.release()
            with shedding.lock:
                shedding.in_flight -= 1

    def enter_thread(self) -> bool:
        with shedding.lock:
            if shedding.in_flight >= self.limit and shedding.waiting >= self.max_waiting:
                return False
            shedding.waiting += 1
        try:
            entered = self.thread_slots.acquire(timeout=self.wait)
        finally:
            with shedding.lock:
                shedding.waiting -= 1
                shedding.in_flight += 1 if entered else 0
        return entered

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponse]] = self.get_response
        if not self.limit or request.path.startswith(EXEMPT_PATHS):
            return await get_response(request)
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.limit)
        if not await self.enter(self.slots):
            return overloaded("concurrency")
        try:
            return await get_response(request)
        finally:
            self.slots.release()
            shedding.in_flight -= 1  # one event loop: no other coroutine runs between these

    async def enter(self, slots: asyncio.Semaphore) -> bool:
        if slots.locked() and shedding.waiting >= self.max_waiting:
            return False
        shedding.waiting += 1
        try:
            async with asyncio.timeout(self.wait):
                await slots.acquire()
        except TimeoutError:
            return False
        finally:
            shedding.waiting -= 1
        shedding.in_flight += 1
        return True


class DependencyTimeoutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        reason = getattr(request, OVERLOAD_ATTRIBUTE, None)
        if reason is not None and response.status_code == 500:
            return overloaded(reason)
        return response


def overload_reason(exc: BaseException | None) -> str | None:
    """What a failure says about the shared state: "database" or "redis" when it did not answer
    (in time), else None (a bug is still a 500)."""
    if isinstance(exc, OperationalError):
        return "database"
    if isinstance(exc, RedisTimeoutError | RedisConnectionError):
        return "redis"
    return None


@receiver(got_request_exception)
def note_overload(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """Django turns any exception of a view or middleware into a 500 and tells us first."""
    import sys

    reason = overload_reason(sys.exc_info()[1])
    if request is not None and reason is not None:
        setattr(request, OVERLOAD_ATTRIBUTE, reason)

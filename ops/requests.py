"""Per request: an id, one structured log line, and latency/status counts shared through Redis.

The id comes from a well-formed `X-Request-ID` (a proxy's) or is made here; it is echoed in the
response and attached to every log line of the request. Counts are kept in memory and added to one
Redis hash at most once a second per process, so every web process's `/metrics` shows the whole
fleet's numbers and a request costs no Redis round trip of its own.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from redis.exceptions import RedisError

from core.context import request_id
from core.redis import redis_client

log = logging.getLogger("atelier.request")

VALID_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_KEY = "atelier:http"
FLUSH_SECONDS = 1.0


class RequestStats:
    def __init__(self) -> None:
        self.pending: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.lock = threading.Lock()
        self.flushed_at = time.monotonic()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        series = f"{method}|{route}|{status}"
        bucket = next((str(b) for b in BUCKETS if seconds <= b), "+Inf")
        with self.lock:
            self.pending[f"{series}|{bucket}"] += 1
            self.pending[f"{series}|count"] += 1
            self.seconds[f"{series}|sum"] += seconds
        if time.monotonic() - self.flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            pending, seconds = self.pending, self.seconds
            self.pending, self.seconds = Counter(), defaultdict(float)
            self.flushed_at = time.monotonic()
        if not pending:
            return
        try:
            pipe = redis_client().pipeline(transaction=False)
            for field, count in pending.items():
                pipe.hincrby(HTTP_KEY, field, count)
            for field, total in seconds.items():
                pipe.hincrbyfloat(HTTP_KEY, field, total)
            pipe.execute()
        except RedisError:
            pass  # metrics are best effort: a lost second of counts is not worth failing a request


stats = RequestStats()


class RequestLogMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if VALID_ID.match(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            request_id.reset(token)
        seconds = time.perf_counter() - started
        response["X-Request-ID"] = rid
        match = request.resolver_match
        route = match.route if match is not None and match.route else "unmatched"
        stats.observe(request.method or "GET", route, response.status_code, seconds)
        user = getattr(request, "user", None)
        log.info(
            "%s %s %s",
            request.method,
            request.path,  # never the query string: signed URLs carry their token there
            response.status_code,
            extra={
                "request_id": rid,
                "route": route,
                "status": response.status_code,
                "ms": round(seconds * 1000, 2),
                "user_id": user.pk if user is not None and user.is_authenticated else None,
            },
        )
        return response

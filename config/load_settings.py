"""Degrading under load: thinning the event path, shedding web requests, deadlines on PostgreSQL
and Redis (generations/publisher.py, ops/load_shedding.py); config/settings.py takes every name
from here and calls ``with_database_deadlines`` on its database."""

from __future__ import annotations

from typing import Any

from core.env import env_float, env_int

# Events (generations/publisher.py). When the oldest unsent event has waited this long, or the
# channel layer took this long for the last send, progress events leave without their preview ...
ATELIER_EVENT_LAG_PREVIEWS = env_float("ATELIER_EVENT_LAG_PREVIEWS", 0.5)
# ... and past this lag only the latest unsent progress event of a generation is kept. Changes of
# status (queued, started, succeeded, failed, canceled) are never dropped.
ATELIER_EVENT_LAG_PROGRESS = env_float("ATELIER_EVENT_LAG_PROGRESS", 2.0)
# One channel-layer send is given up after this many seconds (a hint lost, never a hung publisher).
ATELIER_EVENT_SEND_DEADLINE = env_float("ATELIER_EVENT_SEND_DEADLINE", 10.0)

# The web tier (ops/load_shedding.py): requests one process serves at once (0: no limit) ...
ATELIER_WEB_MAX_CONCURRENCY = env_int("ATELIER_WEB_MAX_CONCURRENCY", 64)
# ... how many more may wait for a slot, and for how long, before they are answered 503 overloaded.
ATELIER_WEB_MAX_WAITING = env_int("ATELIER_WEB_MAX_WAITING", 128)
ATELIER_WEB_QUEUE_SECONDS = env_float("ATELIER_WEB_QUEUE_SECONDS", 2.0)
# The Retry-After of an overloaded answer, in seconds.
ATELIER_OVERLOAD_RETRY_AFTER = env_int("ATELIER_OVERLOAD_RETRY_AFTER", 2)
# /readyz says "degraded" while this process shed a request in the last this many seconds, or a
# dependency took longer than ATELIER_READY_SLOW_MS to answer.
ATELIER_SHED_DEGRADED_SECONDS = env_int("ATELIER_SHED_DEGRADED_SECONDS", 30)
ATELIER_READY_SLOW_MS = env_int("ATELIER_READY_SLOW_MS", 1000)

# Deadlines on the shared state: nothing waits on PostgreSQL or Redis without a bound.
DATABASE_CONNECT_TIMEOUT = env_int("DATABASE_CONNECT_TIMEOUT", 5)  # seconds
# A statement (and a lock wait) is canceled by PostgreSQL after this many milliseconds (0: never);
# run long migrations with DATABASE_STATEMENT_TIMEOUT=0.
DATABASE_STATEMENT_TIMEOUT = env_int("DATABASE_STATEMENT_TIMEOUT", 30_000)
DATABASE_POOL_TIMEOUT = env_float("DATABASE_POOL_TIMEOUT", 5.0)  # waiting for a pooled connection
REDIS_SOCKET_TIMEOUT = env_float("REDIS_SOCKET_TIMEOUT", 5.0)  # one reply of the shared client
REDIS_CONNECT_TIMEOUT = env_float("REDIS_CONNECT_TIMEOUT", 2.0)


def with_database_deadlines(database: Any) -> None:
    """PostgreSQL's connect timeout, statement and lock timeouts and the pool's wait, set on the
    Django database entry ``database`` (a dj_database_url config); on SQLite, its busy timeout."""
    if database["ENGINE"] == "django.db.backends.sqlite3" and DATABASE_STATEMENT_TIMEOUT:
        database["OPTIONS"]["timeout"] = DATABASE_STATEMENT_TIMEOUT / 1000  # the busy wait: a lock's
    if database["ENGINE"] != "django.db.backends.postgresql":
        return
    options = database.setdefault("OPTIONS", {})
    options.setdefault("connect_timeout", DATABASE_CONNECT_TIMEOUT)
    if DATABASE_STATEMENT_TIMEOUT:
        deadline = (
            f"-c statement_timeout={DATABASE_STATEMENT_TIMEOUT} -c lock_timeout={DATABASE_STATEMENT_TIMEOUT}"
        )
        options["options"] = f"{options.get('options', '')} {deadline}".strip()
    if isinstance(options.get("pool"), dict):
        options["pool"].setdefault("timeout", DATABASE_POOL_TIMEOUT)

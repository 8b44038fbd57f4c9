"""Whether this pod's long-running process still beats, for Kubernetes' liveness probes
(`manage.py alive --worker|--dispatcher`).

A GPU worker writes `atelier:worker:<name>` (generations/workers.py), its name `<host>.<pid>`
unless given one; the dispatcher writes `atelier:dispatcher:<host>` once per loop. Both keys
expire, so a process that stopped beating has none. A probe runs in the process's own pod, so
the host name finds its keys.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterable

from django.conf import settings

from core.redis import redis_client
from generations.workers import HEARTBEAT_PREFIX, heartbeat_key, pool_workers_key

DISPATCHER_PREFIX = "atelier:dispatcher:"


def dispatcher_key(host: str) -> str:
    return DISPATCHER_PREFIX + host


def write_dispatcher_heartbeat(host: str | None = None, *, at: float | None = None) -> None:
    at = time.time() if at is None else at
    redis_client().set(
        dispatcher_key(host or socket.gethostname()),
        json.dumps({"at": at}),
        ex=settings.ATELIER_DISPATCHER_HEARTBEAT_TTL,
    )


def dispatcher_beats(host: str) -> bool:
    return bool(redis_client().exists(dispatcher_key(host)))


def worker_names_on(host: str, pools: Iterable[str]) -> list[str]:
    """The workers of `host` that have beaten: named `host` or `host.<pid>`, found in the pools'
    sets when the pools are known, else among the heartbeat keys."""
    mine = re.compile(re.escape(host) + r"(\.\d+)?")
    connection = redis_client()
    candidates: set[str] = set()
    for pool in pools:
        candidates.update(m.decode() for m in connection.zrange(pool_workers_key(pool), 0, -1))
    if not candidates:
        pattern = f"{HEARTBEAT_PREFIX}{host}*"
        candidates = {k.decode()[len(HEARTBEAT_PREFIX) :] for k in connection.scan_iter(pattern, count=1000)}
    return sorted(name for name in candidates if mine.fullmatch(name))


def worker_beats(host: str, pools: Iterable[str] = ()) -> list[str]:
    """The workers of `host` whose heartbeat has not expired."""
    connection = redis_client()
    return [name for name in worker_names_on(host, pools) if connection.exists(heartbeat_key(name))]

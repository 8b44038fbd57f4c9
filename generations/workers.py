"""Worker heartbeats in Redis: the keys, what a worker writes there and every reader.

A worker (gpu_worker/heartbeat.py) writes its state through `write_heartbeat`; the dispatcher's
reconciler treats a running job whose worker has no heartbeat as lost (`is_running`); the admin's
workers page, the health check, ETAs and model affinity read the rest.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from typing import Any

import redis
from django.conf import settings

from core.memo import once
from core.redis import redis_client

HEARTBEAT_PREFIX = "atelier:worker:"
WAITING_FOR_WORKER = "waiting_for_worker"  # the reason a queued job gives when its pool has no worker
POOL_MEMBERSHIP_SECONDS = 3600  # a worker gone this long leaves its pools' sets


def heartbeat_key(name: str) -> str:
    return HEARTBEAT_PREFIX + name


def pool_workers_key(pool: str) -> str:
    """A sorted set of the pool's workers, scored by their last beat."""
    return f"atelier:pool-workers:{pool}"


def write_heartbeat(name: str, state: dict[str, Any], pools: Iterable[str], *, at: float) -> None:
    """One beat: the worker's state (expiring after the heartbeat TTL) and its pools' sets."""
    pipe = redis_client().pipeline()
    pipe.set(heartbeat_key(name), json.dumps({**state, "at": at}), ex=settings.ATELIER_HEARTBEAT_TTL)
    for pool in pools:
        pipe.zadd(pool_workers_key(pool), {name: at})
        pipe.zremrangebyscore(pool_workers_key(pool), "-inf", at - POOL_MEMBERSHIP_SECONDS)
    pipe.execute()


def erase_heartbeat(name: str, pools: Iterable[str]) -> None:
    """A worker that stops cleanly says so at once instead of letting its key expire."""
    pipe = redis_client().pipeline()
    pipe.delete(heartbeat_key(name))
    for pool in pools:
        pipe.zrem(pool_workers_key(pool), name)
    pipe.execute()


def is_alive(name: str) -> bool:
    return bool(name) and bool(redis_client().exists(heartbeat_key(name)))


def is_running(name: str, generation_id: str) -> bool:
    """Whether worker ``name`` is alive and says it is running this generation."""
    raw = redis_client().get(heartbeat_key(name)) if name else None
    if raw is None:
        return False
    return generation_id in (json.loads(raw).get("current_jobs") or [])


def live_worker_count(pool: str) -> int:
    def count() -> int:
        cutoff = time.time() - settings.ATELIER_HEARTBEAT_TTL
        return int(redis_client().zcount(pool_workers_key(pool), cutoff, "+inf"))

    return once(("live_worker_count", pool), count)


def workerless_seconds(pool: str, now: float | None = None) -> float | None:
    """How long the pool has been without a live worker: None while one beats, infinity when
    none has beaten in the last hour (or ever)."""
    latest = redis_client().zrevrange(pool_workers_key(pool), 0, 0, withscores=True)
    return seconds_without(latest, time.time() if now is None else now)


def seconds_without(latest: list[tuple[bytes, float]], now: float) -> float | None:
    """``workerless_seconds`` from the pool's latest heartbeat (ZREVRANGE 0 0 WITHSCORES)."""
    if not latest:
        return math.inf
    last_beat = float(latest[0][1])
    return None if last_beat >= now - settings.ATELIER_HEARTBEAT_TTL else now - last_beat


def is_workerless(idle: float | None) -> bool:
    """Whether ``workerless_seconds``' answer is past ATELIER_WORKERLESS_SECONDS."""
    return idle is not None and idle >= settings.ATELIER_WORKERLESS_SECONDS


def waiting_for_worker(pool: str) -> bool:
    """The pool has had no live worker for longer than ATELIER_WORKERLESS_SECONDS: its queued
    jobs wait for one, with no ETA to give. Read once per web request (core/memo.py)."""

    def waiting() -> bool:
        try:
            return is_workerless(workerless_seconds(pool))
        except redis.RedisError:
            return False

    return once(("waiting_for_worker", pool), waiting)


def pool_heartbeats(connection: redis.Redis, pools: Iterable[str], *, exclude: str) -> list[dict[str, Any]]:
    """The states of the live workers of these pools, but ``exclude``."""
    cutoff = time.time() - settings.ATELIER_HEARTBEAT_TTL
    names: set[str] = set()
    for pool in pools:
        names.update(n.decode() for n in connection.zrangebyscore(pool_workers_key(pool), cutoff, "+inf"))
    names.discard(exclude)
    others = sorted(names)
    beats = connection.mget([heartbeat_key(name) for name in others]) if others else []
    return [json.loads(raw) for raw in beats if raw is not None]


def all_heartbeats(client: redis.Redis | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(name, state) of every worker whose heartbeat key has not expired, by name."""
    client = client or redis_client()
    keys = sorted(client.scan_iter(match=f"{HEARTBEAT_PREFIX}*", count=500))
    values = client.mget(keys) if keys else []
    found = []
    for key, raw in zip(keys, values, strict=True):
        if raw is None:
            continue  # expired between SCAN and MGET
        try:
            state: dict[str, Any] = json.loads(raw)
        except ValueError:
            state = {}
        found.append((key.decode()[len(HEARTBEAT_PREFIX) :], state))
    return found


def serving_workers(client: redis.Redis | None = None) -> set[str]:
    """The live workers whose job loop has started (a worker loads its models first)."""
    return {name for name, state in all_heartbeats(client) if state.get("serving")}


def model_holders() -> dict[str, list[str]]:
    """Model path -> the live workers that hold it: "name" on the device, "name (warm)" in RAM."""
    holders: dict[str, list[str]] = {}
    for name, state in all_heartbeats():
        for path in state.get("models") or []:
            holders.setdefault(str(path), []).append(name)
        for path in state.get("warm_models") or []:
            holders.setdefault(str(path), []).append(f"{name} (warm)")
    return holders

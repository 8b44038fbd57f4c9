"""Where a queued job stands: its position in its pool and the seconds until it starts.

Read by events, the API's resources and admission; it decides nothing (the policy is in
`generations.caps` and `generations.scheduling`).
"""

from __future__ import annotations

import math
import time
from functools import cache

from django.conf import settings
from django.db import connection
from redis.exceptions import RedisError

from core import memo, sql
from core.memo import once
from generations import queues
from generations.models import Generation, GenerationStatus
from generations.workers import (
    is_workerless,
    live_worker_count,
    pool_workers_key,
    seconds_without,
    waiting_for_worker,
)


@cache
def queue_position_sql(higher_lanes: int) -> str:
    higher = f"lane IN ({', '.join(['%s'] * higher_lanes)}) OR " if higher_lanes else ""
    return (
        f"SELECT COUNT(*) FROM {sql.table(Generation)} "  # noqa: S608 (names from the models)
        f"WHERE status = %s AND pool = %s AND ({higher}(lane = %s AND lane_entered_at < %s))"
    )


def queue_position(generation: Generation) -> int | None:
    """1 for the next job to run in its pool: every queued job in a higher lane is ahead, and in
    its own lane every job that entered the lane before it. Counted once per web request (a
    submission tells it in its queued event and in its response)."""
    if generation.status != GenerationStatus.QUEUED:
        return None
    higher = settings.LANES[: settings.LANES.index(generation.lane)]

    def count() -> int:
        # Every submission and every read of a queued generation runs this: SQL rather than the
        # ORM (core/sql.py says why).
        entered = connection.ops.adapt_datetimefield_value(generation.lane_entered_at)
        params = [str(GenerationStatus.QUEUED), generation.pool, *higher, generation.lane, entered]
        row = sql.fetch_one(queue_position_sql(len(higher)), params)
        return int(row[0] if row else 0) + 1

    return once(("queue_position", generation.pk, generation.lane, generation.lane_entered_at), count)


def read_pool_state(pool: str) -> None:
    """The pool's latest heartbeat, live workers and recent job durations in one round trip, kept
    for the rest of the web request (core/memo.py): a submission needs all three, for its queued
    event and its response (three round trips when each was read on first use)."""
    if not memo.active():
        return
    cutoff = time.time() - settings.ATELIER_HEARTBEAT_TTL
    pipe = queues.redis_client().pipeline(transaction=False)
    pipe.zrevrange(pool_workers_key(pool), 0, 0, withscores=True)
    pipe.zcount(pool_workers_key(pool), cutoff, "+inf")
    pipe.lrange(queues.durations_key(pool), 0, -1)
    try:
        latest, live, durations = pipe.execute()
    except RedisError:
        return  # each is read (or does without) on first use, as before
    memo.remember(("waiting_for_worker", pool), is_workerless(seconds_without(latest, time.time())))
    memo.remember(("live_worker_count", pool), int(live))
    memo.remember(("durations", pool), durations)


def eta_seconds(generation: Generation, position: int | None) -> int | None:
    """None when it is not queued, or when its pool has no worker to give a pace."""
    if position is None or waiting_for_worker(generation.pool):
        return None
    return int(pool_eta(generation.pool, position))


def pool_eta(pool: str | None, position: int) -> float:
    """Seconds until a job at ``position`` starts, from the pool's recent job durations."""
    return math.ceil(position * seconds_per_position(pool))


def seconds_per_position(pool: str | None) -> float:
    if pool is None:
        return 10.0
    return queues.mean_duration(pool) / max(1, live_worker_count(pool))

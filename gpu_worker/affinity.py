"""Model affinity: routing that prefers a worker which already holds a job's model.

Jobs stay in the shared ``gen.<pool>.<lane>`` queues; what changes is which job a worker takes.
Each RQ job carries its model's path (``meta["model"]``, see ``generations.queues``) and the time
it was enqueued; workers advertise the models they hold in their heartbeats. Instead of popping
the head of the first non-empty queue, a worker looks at the first ``WINDOW`` jobs of each queue,
in lane order, and takes:

1. the first job whose model it holds (on the device or in RAM) and that was enqueued at most
   ``ATELIER_AFFINITY_WAIT`` seconds after the head: no load at all, and nobody starves behind a
   stream of jobs for a popular model;
2. else the first job whose model no other *idle* worker of the pool holds (someone must load it),
   or that has already waited ``ATELIER_AFFINITY_WAIT`` seconds (the holder did not come for it).

A job left out by rule 2 is another worker's to take within a poll interval. While jobs of a lane
are left to others, the worker takes nothing from a lower lane (the holder may turn out busy, and
the higher-lane job must not then wait behind a long lower-lane run): affinity never delays a
higher-lane job by more than ``ATELIER_AFFINITY_WAIT``. Burst mode stops only when no job waits.
``LREM`` decides races: one worker gets each job. ``ATELIER_AFFINITY_WAIT = 0`` turns affinity off
(RQ's own blocking pop of the head).

An idle worker does not poll: it waits on its pools' doorbell (a pub/sub channel that
``generations.queues`` rings in the same round trip as the enqueue), looking again at least every
second in case a ring was missed, and every ``ATELIER_DEQUEUE_POLL`` seconds while it leaves
jobs to other workers.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.job import Job
from rq.serializers import resolve_serializer

from generations.queue_names import lane_of, pool_of
from generations.queues import doorbell
from generations.workers import pool_heartbeats

WINDOW = 64  # jobs looked at per queue
IDLE_LOOK = 1.0  # seconds: an idle worker looks at the queues at least this often


@dataclass(frozen=True)
class Candidate:
    job_id: str
    model: str | None  # None: enqueued without affinity data
    waited: float


def other_workers(connection: Redis, pools: Iterable[str], me: str) -> list[dict[str, Any]]:
    """The heartbeats of the other live workers of these pools."""
    return pool_heartbeats(connection, pools, exclude=me)


def models_of(info: dict[str, Any]) -> set[str]:
    """The models a worker's heartbeat says it holds, on the device or in RAM."""
    return {*(info.get("models") or []), *(info.get("warm_models") or [])}


def idle_holders(connection: Redis, pools: Iterable[str], me: str) -> frozenset[str]:
    """The models that an idle other worker of these pools holds."""
    infos = other_workers(connection, pools, me)
    return frozenset(path for info in infos if not info.get("current_jobs") for path in models_of(info))


def holder_counts(connection: Redis, pools: Iterable[str], me: str) -> Counter[str]:
    """How many other live workers hold each model, busy or not."""
    return Counter(path for info in other_workers(connection, pools, me) for path in models_of(info))


# The first WINDOW ids of each queue and each one's meta, in one round trip (was two). The job
# hashes are named after the ids (rq:job:<id>, RQ's Job.key_for), so the script reads keys it was
# not given: fine on one Redis, which is what the queues live on.
LOOK = """
local window = tonumber(ARGV[1])
local found = {}
for i, key in ipairs(KEYS) do
    local ids = redis.call('LRANGE', key, 0, window - 1)
    local metas = {}
    for j, id in ipairs(ids) do
        metas[j] = redis.call('HGET', ARGV[2] .. id, 'meta') or ''
    end
    found[i] = {ids, metas}
end
return found
"""


def candidates(connection: Redis, queues: Sequence[Queue]) -> list[list[Candidate]]:
    """The first WINDOW jobs of each queue with their model and how long they have waited."""
    found = connection.register_script(LOOK)(
        keys=[queue.key for queue in queues], args=[WINDOW, Job.redis_job_namespace_prefix]
    )
    serializer = resolve_serializer(None)
    now = time.time()
    per_queue: list[list[Candidate]] = []
    for ids, metas in found:
        jobs = []
        for raw_id, raw in zip(ids, metas, strict=True):
            try:
                meta = serializer.loads(raw) if raw else {}
            except Exception:
                meta = {}
            meta = meta if isinstance(meta, dict) else {}
            jobs.append(Candidate(raw_id.decode(), meta.get("model"), now - float(meta.get("at", now))))
        per_queue.append(jobs)
    return per_queue


def choose(
    jobs: list[Candidate], *, mine: frozenset[str], others: Callable[[], frozenset[str]], wait: float
) -> list[Candidate]:
    """This queue's jobs that this worker should try to take, best first (rules 1 and 2)."""
    if not jobs or wait <= 0:
        return jobs[:1]
    head = jobs[0]
    order = [job for job in jobs if job.model in mine and head.waited - job.waited <= wait]
    held_elsewhere = others()
    order += [
        job for job in jobs if job not in order and (job.waited >= wait or job.model not in held_elsewhere)
    ]
    return order


@dataclass(frozen=True)
class Taken:
    """A job a worker took off its queue (its RQ job not read: the id names the generation)."""

    queue: Queue
    job_id: str


class AffinityQueue(Queue):
    """An RQ queue whose ``dequeue_any`` follows the rules above for one worker.

    Made per worker by ``affinity_queue_class``: RQ calls ``dequeue_any`` on the worker's queue class.
    """

    worker_name: str = ""
    held: Callable[[], frozenset[str]] = staticmethod(frozenset)

    bell: Any = None  # this worker's subscription to its pools' doorbells

    @classmethod
    def pick(cls, queues: Sequence[Queue], connection: Redis) -> Taken | bool:
        """The job taken; else whether any job was waiting (left to others)."""
        per_queue = candidates(connection, queues)
        if not any(per_queue):
            return False
        mine = cls.held()
        known: dict[str, frozenset[str]] = {}

        def others(pool: str) -> frozenset[str]:  # one look per pool and pick, only if needed
            if pool not in known:
                known[pool] = idle_holders(connection, [pool], cls.worker_name)
            return known[pool]

        wait = float(settings.ATELIER_AFFINITY_WAIT)
        left_in_lane = ""
        for queue, jobs in zip(queues, per_queue, strict=True):
            lane = lane_of(queue.name)
            if left_in_lane and lane != left_in_lane:
                # Jobs of a higher lane are left to workers holding their models: take nothing
                # lower until they are taken (or have waited long enough for anyone to take them).
                return True
            order = choose(jobs, mine=mine, others=partial(others, pool_of(queue.name)), wait=wait)
            for job in order:
                if connection.lrem(queue.key, 1, job.job_id):
                    return Taken(queue, job.job_id)
            if len(order) < len(jobs):
                left_in_lane = lane
        return True

    @classmethod
    def take_any(cls, queues: Iterable[Queue], timeout: int | None, connection: Redis) -> Taken | None:
        """The id of the job this worker takes, off its list (its RQ job is not read: the worker
        needs only its id). Waits up to ``timeout`` seconds (None: burst mode, only while jobs
        wait). Raises DequeueTimeout when the time is up."""
        ordered = list(queues)
        if settings.ATELIER_AFFINITY_WAIT <= 0:
            popped = super().dequeue_any(ordered, timeout, connection)
            return Taken(popped[1], popped[0].id) if popped is not None else None
        deadline = None if timeout is None else time.monotonic() + timeout
        if deadline is not None:
            cls.listen(connection, {pool_of(queue.name) for queue in ordered})  # before looking
        while True:
            picked = cls.pick(ordered, connection)
            if not isinstance(picked, bool):
                return picked
            if deadline is None:  # burst mode: stop only when nothing is waiting
                if not picked:
                    return None
                time.sleep(settings.ATELIER_DEQUEUE_POLL)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise DequeueTimeout(timeout, [queue.key for queue in ordered])
            cls.wait_for_ring(min(left, settings.ATELIER_DEQUEUE_POLL if picked else IDLE_LOOK))

    @classmethod
    def dequeue_any(
        cls,
        queues: Iterable[Queue],
        timeout: int | None,
        connection: Redis,
        job_class: type[Job] | None = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Job, Queue] | None:
        """RQ's interface: ``take_any`` with the job read."""
        ordered = list(queues)
        if settings.ATELIER_AFFINITY_WAIT <= 0:
            return super().dequeue_any(
                ordered, timeout, connection, job_class, serializer, death_penalty_class
            )
        while True:
            taken = cls.take_any(ordered, timeout, connection)
            if taken is None:
                return None
            try:
                job = (job_class or Job).fetch(taken.job_id, connection=connection, serializer=serializer)
            except NoSuchJobError:
                continue  # deleted after it was queued: look again
            return job, taken.queue

    @classmethod
    def listen(cls, connection: Redis, pools: set[str]) -> None:
        if cls.bell is None:
            bell = connection.pubsub(ignore_subscribe_messages=True)
            bell.subscribe(*sorted(doorbell(pool) for pool in pools))
            cls.bell = bell

    @classmethod
    def wait_for_ring(cls, seconds: float) -> None:
        """Until jobs are queued in one of this worker's pools, or ``seconds`` pass."""
        try:
            if cls.bell.get_message(timeout=seconds) is not None:
                while cls.bell.get_message(timeout=0) is not None:
                    pass  # one look at the queues answers every ring so far
        except RedisError:
            bell, cls.bell = cls.bell, None  # Redis went away: subscribe again on the next connection
            with contextlib.suppress(RedisError, OSError):
                bell.close()
            raise


def affinity_queue_class(worker_name: str, held: Callable[[], frozenset[str]]) -> type[AffinityQueue]:
    """The queue class of one worker: ``held()`` says which model paths it holds right now."""
    return type(
        "WorkerAffinityQueue", (AffinityQueue,), {"worker_name": worker_name, "held": staticmethod(held)}
    )

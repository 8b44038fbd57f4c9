"""RQ routing: queue ``gen.<pool>.<lane>``, jobs carry only the generation id."""

from __future__ import annotations

import json
import logging
import time

import redis
from django.conf import settings
from django.db import transaction
from rq import Queue

from core.memo import once
from core.redis import redis_client as redis_client  # re-exported: queue helpers and tests use it
from generations.models import Generation
from generations.queue_names import pool_of
from generations.registry import get_model

JOB_FUNCTION = "gpu_worker.jobs.run_generation"
log = logging.getLogger(__name__)


def rq_queue(name: str) -> Queue:
    """An RQ queue on this process's one Redis client (django_rq would open a connection per call)."""
    return Queue(name, connection=redis_client(), default_timeout=job_timeout(name))


def job_timeout(name: str) -> int:
    """Seconds a job of this queue may run: its pool's ATELIER_POOL_TIMEOUTS entry, also for the
    pools of models added at run time (settings' RQ_QUEUES only knows ATELIER_MODELS' pools)."""
    configured = settings.RQ_QUEUES.get(name, {}).get("DEFAULT_TIMEOUT")
    if configured is not None:
        return int(str(configured))
    return int(settings.ATELIER_POOL_TIMEOUTS.get(pool_of(name), settings.ATELIER_JOB_TIMEOUT))


def job_id_for(generation: Generation) -> str:
    # One RQ job per attempt, and per preemption within it: a re-queued generation never shares a
    # job with its lost attempt, a preempted one never with the run it was stopped in.
    run = f"{generation.attempts}p{generation.preemptions}" if generation.preemptions else generation.attempts
    return f"gen-{generation.id}-{run}"


def enqueue(generation: Generation) -> None:
    enqueue_many([generation])


def enqueue_after_commit(generations: list[Generation], *, at_front: bool = False) -> None:
    """Enqueue once the rows are committed. If Redis is away the rows stay queued and the
    dispatcher enqueues them again when it is back, so the request still succeeds."""

    def run() -> None:
        try:
            enqueue_many(generations, at_front=at_front)
        except redis.RedisError as exc:
            log.warning("could not enqueue %d jobs, the dispatcher will: %s", len(generations), exc)

    transaction.on_commit(run)


def enqueue_many(generations: list[Generation], *, at_front: bool = False) -> None:
    """One Redis pipeline per queue, so releasing many jobs costs few round trips; ``at_front``:
    the next jobs of their lanes (a preempted job goes back where it was)."""
    by_queue: dict[str, list[Generation]] = {}
    for generation in generations:
        by_queue.setdefault(generation.queue_name, []).append(generation)
    for name, members in by_queue.items():
        queue = rq_queue(name)
        pipe = queue.connection.pipeline()
        jobs = [
            Queue.prepare_data(
                JOB_FUNCTION,
                args=(str(g.id),),
                job_id=job_id_for(g),
                result_ttl=0,
                failure_ttl=7 * 24 * 3600,
                meta=affinity_meta(g),
                at_front=at_front,
            )
            for g in members
        ]
        queue.enqueue_many(jobs, pipeline=pipe)
        pipe.publish(doorbell(members[0].pool), str(len(jobs)))  # idle workers look at the queues now
        pipe.execute()


def doorbell(pool: str) -> str:
    """The pub/sub channel that wakes a pool's idle workers when jobs are queued."""
    return f"atelier:work:{pool}"


def affinity_meta(generation: Generation) -> dict[str, object]:
    """What workers choose by (gpu_worker/affinity.py): the model's path and the enqueue time."""
    spec = get_model(generation.model_name)
    return {"model": spec.path if spec is not None else None, "at": time.time()}


def move(generation: Generation, old_queue: str) -> None:
    """Move a waiting job to the back of ``generation.queue_name`` (aging, staff moves)."""
    job_id = job_id_for(generation)
    rq_queue(old_queue).remove(job_id)
    enqueue(generation)


def move_to_front(generation: Generation) -> None:
    queue = rq_queue(generation.queue_name)
    job_id = job_id_for(generation)
    queue.remove(job_id)
    pipe = queue.connection.pipeline()
    pipe.lpush(queue.key, job_id)
    pipe.publish(doorbell(generation.pool), "1")
    pipe.execute()


def queue_key(name: str) -> str:
    """The Redis list of RQ queue ``name`` (what ``Queue(name).key`` is, without making a Queue)."""
    return f"rq:queue:{name}"


def queue_length(name: str) -> int:
    return int(redis_client().llen(queue_key(name)))


DURATIONS_KEPT = 50


def durations_key(pool: str) -> str:
    return f"atelier:durations:{pool}"


def record_duration(pool: str, seconds: float, *, at: float) -> None:
    pipe = redis_client().pipeline()
    pipe.lpush(durations_key(pool), f"{seconds:.3f}")
    pipe.ltrim(durations_key(pool), 0, DURATIONS_KEPT - 1)
    pipe.execute()


def mean_duration(pool: str, default: float = 10.0) -> float:
    """Of the pool's recent jobs; read once per web request (core/memo.py)."""
    raw = once(("durations", pool), lambda: redis_client().lrange(durations_key(pool), 0, -1))
    values = [float(v) for v in raw]
    return sum(values) / len(values) if values else default


JOB_METRICS_KEPT = 200


def job_metrics_key(pool: str) -> str:
    return f"atelier:job-metrics:{pool}"


def record_job_metrics(pool: str, *metrics: dict[str, object]) -> None:
    """The phase timings of finished jobs (a batch's), newest first, for the admin and /metrics."""
    if not metrics:
        return
    pipe = redis_client().pipeline()
    pipe.lpush(job_metrics_key(pool), *(json.dumps(each) for each in metrics))
    pipe.ltrim(job_metrics_key(pool), 0, JOB_METRICS_KEPT - 1)
    pipe.execute()


def recent_job_metrics(pool: str) -> list[dict[str, object]]:
    return [json.loads(raw) for raw in redis_client().lrange(job_metrics_key(pool), 0, -1)]


MODEL_EVENTS_KEY = "atelier:model-events"


def record_model_events(events: list[dict[str, object]]) -> None:
    """Model loads and swaps reported by the workers, newest first."""
    pipe = redis_client().pipeline()
    for event in events:
        pipe.lpush(MODEL_EVENTS_KEY, json.dumps(event))
    pipe.ltrim(MODEL_EVENTS_KEY, 0, JOB_METRICS_KEPT - 1)
    pipe.execute()


def recent_model_events() -> list[dict[str, object]]:
    return [json.loads(raw) for raw in redis_client().lrange(MODEL_EVENTS_KEY, 0, -1)]


def dequeue(generation: Generation) -> None:
    """Drop the job from its queue if it is still there; a worker that gets it anyway drops it."""
    queue = rq_queue(generation.queue_name)
    queue.remove(job_id_for(generation))


def cancel_flag_key(generation_id: str) -> str:
    return f"atelier:cancel:{generation_id}"


def request_cancel(generation: Generation) -> None:
    redis_client().set(cancel_flag_key(str(generation.id)), 1, ex=24 * 3600)


def preempt_flag_key(generation_id: str) -> str:
    """Set by the dispatcher (generations/preemption.py), read with the cancel flag each step."""
    return f"atelier:preempt:{generation_id}"


def run_token(generation: Generation) -> str:
    """A preempt flag's value: the run it stops (its start), so that a flag set just as that run
    ended never stops the job's next run."""
    return generation.started_at.isoformat() if generation.started_at else ""


def cancel_requested(generation_id: str) -> bool:
    return bool(redis_client().exists(cancel_flag_key(generation_id)))

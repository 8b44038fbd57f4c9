"""RQ routing: queue ``gen.<pool>.<lane>``, jobs carry only the generation id."""

from __future__ import annotations

from functools import lru_cache

import django_rq
import redis
from django.conf import settings

from generations.models import Generation

JOB_FUNCTION = "gpu_worker.jobs.run_generation"


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def job_id_for(generation: Generation) -> str:
    # One RQ job per attempt: a re-queued generation never shares a job with its lost attempt.
    return f"gen-{generation.id}-{generation.attempts}"


def enqueue(generation: Generation) -> None:
    queue = django_rq.get_queue(generation.queue_name)
    queue.enqueue(
        JOB_FUNCTION,
        str(generation.id),
        job_id=job_id_for(generation),
        result_ttl=0,
        failure_ttl=7 * 24 * 3600,
    )


def dequeue(generation: Generation) -> None:
    """Drop the job from its queue if it is still there; a worker that gets it anyway drops it."""
    queue = django_rq.get_queue(generation.queue_name)
    queue.remove(job_id_for(generation))


def cancel_flag_key(generation_id: str) -> str:
    return f"atelier:cancel:{generation_id}"


def request_cancel(generation: Generation) -> None:
    redis_client().set(cancel_flag_key(str(generation.id)), 1, ex=24 * 3600)


def cancel_requested(generation_id: str) -> bool:
    return bool(redis_client().exists(cancel_flag_key(generation_id)))

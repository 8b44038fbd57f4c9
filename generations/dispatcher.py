"""The dispatcher's step: find jobs whose worker died or whose RQ job vanished, and fix them.

``python manage.py dispatcher`` runs ``tick()`` in a loop; tests call ``tick()`` directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from generations import lifecycle, queues
from generations.events import announce
from generations.leaving_chores import chores
from generations.models import Generation, GenerationStatus
from generations.preemption import preempt_for_waiting_priority
from generations.registry import known_pools
from generations.scheduling import age_queued, release_all_pending, release_relax
from generations.workers import is_running, waiting_for_worker
from webhooks.sender import deliver_due
from webhooks.services import delete_old_deliveries_now_and_then

log = logging.getLogger(__name__)


@dataclass
class TickResult:
    requeued: int = 0
    failed: int = 0
    reenqueued: int = 0
    released: int = 0
    relax_released: int = 0
    aged: int = 0
    webhooks_sent: int = 0
    webhooks_deleted: int = 0
    told_waiting: int = 0
    leaving_chores: int = 0
    preempted: int = 0

    def __bool__(self) -> bool:
        return any(vars(self).values())


def tick() -> TickResult:
    result = TickResult()
    reconcile_lost_workers(result)
    reenqueue_vanished_jobs(result)
    result.released = release_all_pending()
    result.relax_released = release_relax()
    result.aged = age_queued()
    result.preempted = preempt_for_waiting_priority()
    result.webhooks_sent = deliver_due()
    result.webhooks_deleted = delete_old_deliveries_now_and_then()
    result.told_waiting = tell_workerless_pools()
    result.leaving_chores = int(chores().start_if_due())  # purges and exports, beside the loop
    return result


WORKERLESS_KEY = "atelier:workerless-pools"  # a set: the pools whose queued jobs were told so


def tell_workerless_pools() -> int:
    """When a pool has been without a worker past the limit, or gets one again, its queued jobs'
    owners hear it once (a ``generation.queued`` event with, then without, ``waiting_reason``
    and its ETA). Returns the jobs told."""
    told = 0
    connection = queues.redis_client()
    for pool in known_pools():
        if waiting_for_worker(pool):
            changed = connection.sadd(WORKERLESS_KEY, pool)
        else:
            changed = connection.srem(WORKERLESS_KEY, pool)
        if not changed:
            continue
        for generation in Generation.objects.filter(status=GenerationStatus.QUEUED, pool=pool):
            announce(generation, "generation.queued")
            told += 1
    return told


def reconcile_lost_workers(result: TickResult) -> None:
    grace = timezone.now() - timedelta(seconds=settings.ATELIER_HEARTBEAT_TTL)
    running = Generation.objects.filter(status=GenerationStatus.RUNNING, started_at__lt=grace)
    for generation in running.only("id", "worker_name", "attempts"):
        # A live worker that is busy with something else lost this job (say, Redis restarted).
        if is_running(generation.worker_name, str(generation.id)):
            continue
        if generation.attempts + 1 >= settings.ATELIER_MAX_ATTEMPTS:
            fail_lost(generation, result)
        else:
            requeue_lost(generation, result)


def requeue_lost(generation: Generation, result: TickResult) -> None:
    lost_worker = generation.worker_name
    if lifecycle.requeue_lost(generation):
        log.warning("re-queued %s: worker %s stopped beating", generation.id, lost_worker)
        result.requeued += 1


def fail_lost(generation: Generation, result: TickResult) -> None:
    if lifecycle.fail_lost(generation):
        result.failed += 1


def reenqueue_vanished_jobs(result: TickResult) -> None:
    """Queued rows whose RQ job is in no queue: Redis lost its data, or a worker took the job off
    its queue and died before claiming the row. Enqueue them again; should the job only have been
    on its way to a live worker, the copy is harmless (only one worker can claim a row)."""
    cutoff = timezone.now() - timedelta(seconds=settings.ATELIER_HEARTBEAT_TTL)
    connection = queues.redis_client()
    waiting: dict[str, set[bytes]] = {}
    stale = Generation.objects.filter(status=GenerationStatus.QUEUED, created_at__lt=cutoff)
    for generation in stale.only("id", "attempts", "pool", "lane", "model_name"):
        name = generation.queue_name
        if name not in waiting:  # one read of each queue per tick, not one call per row
            waiting[name] = set(connection.lrange(queues.queue_key(name), 0, -1))
        if queues.job_id_for(generation).encode() not in waiting[name]:
            queues.enqueue(generation)
            result.reenqueued += 1

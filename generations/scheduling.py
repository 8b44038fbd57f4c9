"""Fair use of the queues: the dispatcher's sweeps of pending jobs, relax ordering, aging.

Which jobs may enter RQ is `generations.caps`; moving them there is `generations.lifecycle`.
Everything that changes which jobs are in RQ takes the user's billing row lock first, so two
requests for one user can never push them past their cap together.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from generations import caps, lifecycle, queues
from generations.models import Generation, GenerationStatus
from generations.queue_names import queue_name


def release_all_pending(now: datetime | None = None) -> int:
    """The dispatcher's sweep: every user with due pending jobs and room under their cap."""
    now = now or timezone.now()
    users = (
        Generation.objects.filter(caps.due(now), status=GenerationStatus.PENDING, relax=False)
        .order_by()  # the model's default ordering would make DISTINCT return one row per job
        .values_list("user_id", flat=True)
        .distinct()
    )
    return sum(lifecycle.release_pending(user_id, now) for user_id in list(users))


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def release_relax(now: datetime | None = None) -> int:
    """Keep each pool's relax queue short, filled fewest-relax-GPU-seconds-this-month first."""
    now = now or timezone.now()
    released = 0
    waiting = Generation.objects.filter(status=GenerationStatus.PENDING, relax=True)
    for pool in sorted(set(waiting.values_list("pool", flat=True))):
        room = settings.ATELIER_RELAX_QUEUE_DEPTH - queues.queue_length(queue_name(pool, "relax"))
        if room <= 0:
            continue
        users = set(waiting.filter(pool=pool).values_list("user_id", flat=True))
        used = dict(
            Generation.objects.filter(user_id__in=users, relax=True, finished_at__gte=month_start(now))
            .values("user_id")
            .annotate(seconds=Sum("run_seconds"))
            .values_list("user_id", "seconds")
        )
        for user_id in sorted(users, key=lambda u: used.get(u) or 0.0):
            if room <= 0:
                break
            with transaction.atomic():
                plan = caps.lock_plan(user_id)
                if caps.counts(user_id)[0] >= plan.max_concurrent:
                    continue
                oldest = waiting.filter(pool=pool, user_id=user_id).order_by("created_at").first()
                if oldest is not None and lifecycle.release([oldest.id], now):
                    room -= 1
                    released += 1
    return released


def lane_age_limits() -> dict[str, float]:
    return dict(settings.ATELIER_LANE_AGE_LIMITS)


def age_queued(now: datetime | None = None) -> int:
    """A job that waited longer than its lane's limit moves one lane up, so nothing starves. Its
    status stays queued: only its lane changes."""
    now = now or timezone.now()
    moved = 0
    lanes = list(settings.LANES)
    for lane, limit in lane_age_limits().items():
        if lane not in lanes or lanes.index(lane) == 0:
            continue
        higher = lanes[lanes.index(lane) - 1]
        cutoff = now - timedelta(seconds=limit)
        stale = Generation.objects.filter(
            status=GenerationStatus.QUEUED, lane=lane, lane_entered_at__lt=cutoff
        )
        for generation in stale.order_by("lane_entered_at")[:500]:
            changed = Generation.objects.filter(
                pk=generation.pk, status=GenerationStatus.QUEUED, lane=lane
            ).update(lane=higher, lane_entered_at=now)
            if changed:
                old_queue = generation.queue_name
                generation.lane = higher
                queues.move(generation, old_queue)
                moved += 1
    return moved

"""Fair use of the queues: per-user caps, pending jobs released in order, relax ordering, aging.

Everything that changes which jobs are in RQ takes the user's billing row lock first, so two
requests for one user can never push them past their cap together.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from billing.credits import account_for, bring_up_to_date, effective_plan
from billing.models import BillingAccount, Plan
from core import sql
from core.errors import ApiError
from generations import events, queues
from generations.models import Generation, GenerationStatus

IN_FLIGHT = (GenerationStatus.QUEUED, GenerationStatus.RUNNING)


@cache
def lock_account_sql() -> str:
    accounts, plans = sql.table(BillingAccount), sql.table(Plan)
    lock = f" FOR UPDATE OF {accounts}" if connection.features.has_select_for_update_of else ""
    return (
        f"SELECT {sql.columns(BillingAccount)}, {sql.columns(Plan)} FROM {accounts} "  # noqa: S608
        f"JOIN {plans} ON {plans}.id = {accounts}.plan_id WHERE {accounts}.user_id = %s{lock}"
    )


def lock_account(user_id: int) -> BillingAccount:
    """Lock the user's billing row for the rest of the transaction."""
    # Every submission runs this: SQL rather than the ORM (core/sql.py says why).
    row = sql.fetch_one(lock_account_sql(), [user_id])
    if row is None:
        from accounts.models import User

        return account_for(User.objects.get(pk=user_id))
    account = sql.instance(BillingAccount, row[: sql.width(BillingAccount)])
    account.plan = sql.instance(Plan, row[sql.width(BillingAccount) :])
    return bring_up_to_date(account)


def lock_plan(user_id: int) -> Plan:
    """Lock the user's billing row for the rest of the transaction and return their plan."""
    return effective_plan(lock_account(user_id))


@cache
def counts_sql() -> str:
    return (
        f"SELECT status, COUNT(*) FROM {sql.table(Generation)} "  # noqa: S608 (names from the models)
        "WHERE user_id = %s AND status IN (%s, %s, %s) GROUP BY status"
    )


def counts(user_id: int) -> tuple[int, int]:
    """(jobs in RQ or running, jobs pending) for one user."""
    # Every submission runs this: SQL rather than the ORM (core/sql.py says why).
    statuses = [str(s) for s in (*IN_FLIGHT, GenerationStatus.PENDING)]
    rows = sql.fetch_all(counts_sql(), [user_id, *statuses])
    by_status = {status: n for status, n in rows}
    return sum(by_status.get(s, 0) for s in IN_FLIGHT), by_status.get(GenerationStatus.PENDING, 0)


def admission(*, plan: Plan, user_id: int, relax: bool) -> str:
    """The status a new job starts in, or ``429 queue_full``. Call inside the submit transaction,
    with the user's billing row locked."""
    active, pending = counts(user_id)
    if not relax and pending == 0 and active < plan.max_concurrent:
        return GenerationStatus.QUEUED
    if pending < plan.max_pending:
        return GenerationStatus.PENDING
    raise ApiError(
        "queue_full",
        f"You already have {pending} jobs waiting, the most your plan ({plan.name}) allows.",
        {"pending": pending, "max_pending": plan.max_pending},
        headers={"Retry-After": str(max(1, round(pool_eta(None, 1))))},
    )


def release_pending(user_id: int, now: datetime | None = None) -> int:
    """Move the user's oldest pending (non-relax, due) jobs into RQ while they are under their cap."""
    now = now or timezone.now()
    with transaction.atomic():
        plan = lock_plan(user_id)
        active, _ = counts(user_id)
        slots = plan.max_concurrent - active
        if slots <= 0:
            return 0
        due = Q(retry_at__isnull=True) | Q(retry_at__lte=now)
        ids = list(
            Generation.objects.filter(due, user_id=user_id, status=GenerationStatus.PENDING, relax=False)
            .order_by("created_at")
            .values_list("id", flat=True)[:slots]
        )
        return promote(ids, now)


def promote(ids: list[Any], now: datetime) -> int:
    """pending -> queued for these ids (the caller holds the user's lock), enqueued after commit."""
    if not ids:
        return 0
    Generation.objects.filter(id__in=ids, status=GenerationStatus.PENDING).update(
        status=GenerationStatus.QUEUED, lane_entered_at=now, retry_at=None
    )
    released = list(
        Generation.objects.filter(id__in=ids, status=GenerationStatus.QUEUED).order_by("created_at")
    )
    if released:
        # They all just entered the back of their lane: one count gives every position.
        first = released[0]
        base = queue_position(first) or 1
        pace = seconds_per_position(first.pool)
        for offset, generation in enumerate(released):
            if generation.queue_name == first.queue_name:
                position: int | None = base + offset
                eta: int | None = math.ceil((base + offset) * pace)
            else:
                position = queue_position(generation)
                eta = eta_seconds(generation, position)
            events.publish_on_commit(
                generation, "generation.queued", queue_position=position, eta_seconds=eta
            )
    queues.enqueue_after_commit(released)
    return len(released)


def release_all_pending(now: datetime | None = None) -> int:
    """The dispatcher's sweep: every user with due pending jobs and room under their cap."""
    now = now or timezone.now()
    due = Q(retry_at__isnull=True) | Q(retry_at__lte=now)
    users = (
        Generation.objects.filter(due, status=GenerationStatus.PENDING, relax=False)
        .order_by()  # the model's default ordering would make DISTINCT return one row per job
        .values_list("user_id", flat=True)
        .distinct()
    )
    return sum(release_pending(user_id, now) for user_id in list(users))


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def release_relax(now: datetime | None = None) -> int:
    """Keep each pool's relax queue short, filled fewest-relax-GPU-seconds-this-month first."""
    now = now or timezone.now()
    released = 0
    waiting = Generation.objects.filter(status=GenerationStatus.PENDING, relax=True)
    for pool in sorted(set(waiting.values_list("pool", flat=True))):
        room = settings.ATELIER_RELAX_QUEUE_DEPTH - queues.queue_length(f"gen.{pool}.relax")
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
                plan = lock_plan(user_id)
                if counts(user_id)[0] >= plan.max_concurrent:
                    continue
                oldest = waiting.filter(pool=pool, user_id=user_id).order_by("created_at").first()
                if oldest is not None and promote([oldest.id], now):
                    room -= 1
                    released += 1
    return released


def lane_age_limits() -> dict[str, float]:
    return dict(settings.ATELIER_LANE_AGE_LIMITS)


def age_queued(now: datetime | None = None) -> int:
    """A job that waited longer than its lane's limit moves one lane up, so nothing starves."""
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


@cache
def queue_position_sql(higher_lanes: int) -> str:
    higher = f"lane IN ({', '.join(['%s'] * higher_lanes)}) OR " if higher_lanes else ""
    return (
        f"SELECT COUNT(*) FROM {sql.table(Generation)} "  # noqa: S608 (names from the models)
        f"WHERE status = %s AND pool = %s AND ({higher}(lane = %s AND lane_entered_at < %s))"
    )


def queue_position(generation: Generation) -> int | None:
    """1 for the next job to run in its pool: every queued job in a higher lane is ahead, and in
    its own lane every job that entered the lane before it."""
    if generation.status != GenerationStatus.QUEUED:
        return None
    higher = settings.LANES[: settings.LANES.index(generation.lane)]
    # Every submission and every read of a queued generation runs this: SQL rather than the ORM
    # (core/sql.py says why).
    entered = connection.ops.adapt_datetimefield_value(generation.lane_entered_at)
    params = [str(GenerationStatus.QUEUED), generation.pool, *higher, generation.lane, entered]
    row = sql.fetch_one(queue_position_sql(len(higher)), params)
    return int(row[0] if row else 0) + 1


def eta_seconds(generation: Generation, position: int | None) -> int | None:
    if position is None:
        return None
    return int(pool_eta(generation.pool, position))


def pool_eta(pool: str | None, position: int) -> float:
    """Seconds until a job at ``position`` starts, from the pool's recent job durations."""
    return math.ceil(position * seconds_per_position(pool))


def seconds_per_position(pool: str | None) -> float:
    if pool is None:
        return 10.0
    return queues.mean_duration(pool) / max(1, queues.live_workers(pool))

"""Per-user caps: the billing row lock, the jobs a user has in flight, and what may enter RQ.

Everything that changes which jobs are in RQ takes the user's billing row lock first, so two
requests for one user can never push them past their cap together. This module only reads and
decides; `generations.lifecycle` makes the changes.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Q

from billing.credits import account_for, bring_up_to_date, effective_plan
from billing.models import BillingAccount, Plan
from core import sql
from core.errors import ApiError
from generations.models import Generation, GenerationStatus
from generations.positions import pool_eta

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


def due(now: datetime) -> Q:
    """Pending jobs whose retry backoff, if any, has passed."""
    return Q(retry_at__isnull=True) | Q(retry_at__lte=now)


def releasable(user_id: int, now: datetime) -> list[Any]:
    """Ids of the user's oldest due pending (non-relax) jobs that fit under their cap. Locks the
    user's billing row: call inside the transaction that releases them."""
    account = lock_account(user_id)
    active, pending = counts(user_id)
    if pending == 0:  # every finish asks; most users have nothing waiting (counted under the lock)
        return []
    slots = effective_plan(account).max_concurrent - active
    if slots <= 0:
        return []
    return list(
        Generation.objects.filter(due(now), user_id=user_id, status=GenerationStatus.PENDING, relax=False)
        .order_by("lane_entered_at", "created_at")
        .values_list("id", flat=True)[:slots]
    )

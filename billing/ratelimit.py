"""API rate limits, counted atomically in Redis per API key, per user and per client IP, at the
rate of the caller's plan. The API edge's middleware (api/ratelimit.py) asks and answers."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from accounts.models import User
from core import sql
from core.redis import redis_client

WINDOW_SECONDS = 60
log = logging.getLogger(__name__)

# INCR and EXPIRE in one step, so a counter can never be left without its expiry.
_INCREMENT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


@dataclass(frozen=True)
class RateResult:
    limit: int
    remaining: int
    reset: int

    @property
    def allowed(self) -> bool:
        return self.remaining >= 0


def hit(buckets: list[tuple[str, int]], now: float | None = None) -> list[RateResult]:
    """Count one request in each (bucket, limit) of this window, in one round trip."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    pipe = redis_client().pipeline(transaction=False)
    for bucket, _ in buckets:
        pipe.eval(_INCREMENT, 1, f"atelier:rl:{bucket}:{window}", WINDOW_SECONDS + 1)
    counts = pipe.execute()
    reset = int((window + 1) * WINDOW_SECONDS - now) or 1
    return [
        RateResult(limit=limit, remaining=limit - int(count), reset=reset)
        for (_, limit), count in zip(buckets, counts, strict=True)
    ]


@cache
def plan_columns() -> tuple[str, str]:
    """The rate and subscription status of a user's plan, as columns and joins to a query that
    has the user's table."""
    from accounts.models import User
    from billing.models import BillingAccount, Plan

    users, accounts, plans = sql.table(User), sql.table(BillingAccount), sql.table(Plan)
    also = f", {plans}.api_rate_per_minute, {accounts}.subscription_status"
    joins = (
        f" LEFT JOIN {accounts} ON {accounts}.user_id = {users}.id"
        f" LEFT JOIN {plans} ON {plans}.id = {accounts}.plan_id"
    )
    return also, joins


@cache
def plan_rate_sql() -> str:
    from accounts.models import User

    also, joins = plan_columns()
    users = sql.table(User)
    return f"SELECT {also.lstrip(', ')} FROM {users}{joins} WHERE {users}.id = %s"  # noqa: S608


def rate_of(user: User, row: tuple[Any, ...] | None) -> int:
    """The user's rate from ``plan_columns``' values; the slow way for a delinquent or new account."""
    from billing.credits import account_for, effective_plan
    from billing.models import DELINQUENT

    if row is None or row[0] is None or row[1] in DELINQUENT:
        return effective_plan(account_for(user)).api_rate_per_minute
    return int(row[0])


def plan_rate(user: User) -> int:
    # Every API request runs this: SQL rather than the ORM (core/sql.py says why).
    return rate_of(user, sql.fetch_one(plan_rate_sql(), [user.pk]))

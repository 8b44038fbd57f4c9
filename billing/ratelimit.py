"""API rate limits, counted atomically in Redis per API key, per user and per client IP.

Every /api/ response carries ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``;
past the limit the answer is ``429 rate_limited`` with ``Retry-After``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from redis.exceptions import RedisError

from accounts.authentication import bearer_token
from accounts.models import User
from accounts.services import api_key_owner
from core import sql
from core.errors import error_body
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


def client_ip(request: HttpRequest) -> str:
    """The address of the hop just before our trusted proxies; X-Forwarded-For entries added by
    the client itself are ignored, so rotating them changes nothing."""
    remote = str(request.META.get("REMOTE_ADDR", ""))
    proxies = settings.ATELIER_TRUSTED_PROXIES
    if proxies <= 0:
        return remote
    header = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    forwarded = [part.strip() for part in header.split(",") if part.strip()]
    # The last `proxies` addresses (counting REMOTE_ADDR) were written by our proxies.
    chain = [*forwarded, remote]
    return chain[-(proxies + 1)] if len(chain) > proxies else chain[0]


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


def buckets_for(request: HttpRequest) -> list[tuple[str, int]]:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    token = bearer_token(header) if header else None
    if token:
        # The key's user and their plan's rate in one query.
        owner = api_key_owner(token, also=plan_columns()[0], joins=plan_columns()[1])
        if owner is not None:
            user, plan = owner
            request.api_key_user = user  # type: ignore[attr-defined]
            rate = rate_of(user, plan)
            prefix = token.partition(".")[0]
            return [(f"key:{prefix}", rate), (f"user:{user.pk}", rate)]
    elif request.user.is_authenticated:
        assert isinstance(request.user, User)
        return [(f"user:{request.user.pk}", plan_rate(request.user))]
    return [(f"ip:{client_ip(request)}", settings.ATELIER_ANON_RATE_PER_MINUTE)]


class RateLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(("/api/", "/v1/")):
            return self.get_response(request)
        try:
            results = hit(buckets_for(request))
        except RedisError as exc:
            # Fail open: an outage of the counters must not take the API down with it.
            log.warning("rate limits unavailable: %s", exc)
            return self.get_response(request)
        tightest = min(results, key=lambda r: (r.remaining, -r.reset))
        if not tightest.allowed:
            response: HttpResponse = JsonResponse(
                error_body("rate_limited", f"Rate limit of {tightest.limit} requests per minute exceeded."),
                status=429,
            )
            response["Retry-After"] = str(tightest.reset)
        else:
            response = self.get_response(request)
        response["RateLimit-Limit"] = str(tightest.limit)
        response["RateLimit-Remaining"] = str(max(0, tightest.remaining))
        response["RateLimit-Reset"] = str(tightest.reset)
        return response

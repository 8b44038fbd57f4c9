"""Every API response carries ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``;
past the limit the answer is ``429 rate_limited`` with ``Retry-After``. Billing counts
(billing/ratelimit.py); this decides whose counters a request hits and answers.

ComfyUI clients poll: SillyTavern reads the whole ``/history`` every 100 ms, others ``/queue`` and
``/history/{id}`` until a prompt is done. Reads of one's own ComfyUI state (GET and HEAD on its
routes) therefore count against a separate, generous read limit
(``ATELIER_COMFY_READ_RATE_PER_MINUTE``), so polling never uses up the plan's rate that
``POST /prompt`` and the other writes count against."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from redis.exceptions import RedisError

from accounts.models import User
from api.authentication import key_caller
from api.middleware import API_PREFIXES, is_comfy_path
from billing.ratelimit import hit, plan_rate, rate_of
from core.client import client_ip
from core.errors import error_body

log = logging.getLogger(__name__)


def buckets_for(request: HttpRequest) -> list[tuple[str, int]]:
    """(counter, limit) pairs: the key's and its user's, else the session user's, else the address's."""
    caller = key_caller(request)
    if caller is not None:
        if caller.user is not None:
            rate = rate_of(caller.user, caller.plan)
            return [(f"key:{caller.prefix}", rate), (f"user:{caller.user.pk}", rate)]
    elif request.user.is_authenticated:
        assert isinstance(request.user, User)
        return [(f"user:{request.user.pk}", plan_rate(request.user))]
    return [(f"ip:{client_ip(request)}", settings.ATELIER_ANON_RATE_PER_MINUTE)]


def is_comfy_read(request: HttpRequest) -> bool:
    return request.method in ("GET", "HEAD") and is_comfy_path(request.path)


def read_buckets_for(request: HttpRequest) -> list[tuple[str, int]] | None:
    """The read counters of a signed-in caller's ComfyUI poll; None for everything else (an
    anonymous caller gets no second allowance)."""
    if not is_comfy_read(request):
        return None
    caller = key_caller(request)
    if caller is not None and caller.user is not None:
        return [(f"read:user:{caller.user.pk}", settings.ATELIER_COMFY_READ_RATE_PER_MINUTE)]
    return None


class RateLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIXES):
            return self.get_response(request)
        try:
            results = hit(read_buckets_for(request) or buckets_for(request))
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

"""``Idempotency-Key`` on any POST of the API: a repeated key from the same user gets the first
response back for 24 hours; the same key with a different request is ``409``."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from redis.exceptions import RedisError

from api.authentication import api_user
from api.middleware import API_PREFIXES
from core.errors import error_body
from core.redis import redis_client

log = logging.getLogger(__name__)
TTL_SECONDS = 24 * 3600
IN_PROGRESS = "in_progress"
# How long a claim holds while its request runs: longer than any request may take (/v1/images/*
# waits up to 120 s for its images, `Prefer: wait` up to 60 s), or a retry after the marker
# lapsed would run the job a second time. A request that dies leaves its key busy this long.
IN_PROGRESS_SECONDS = 600


def fingerprint(request: HttpRequest) -> str:
    digest = hashlib.sha256()
    for part in (request.method or "", request.path, request.META.get("CONTENT_TYPE", "")):
        digest.update(part.encode() + b"\0")
    digest.update(request.body)
    return digest.hexdigest()


class IdempotencyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        key = request.headers.get("Idempotency-Key", "")
        if request.method != "POST" or not key or not request.path.startswith(API_PREFIXES):
            return self.get_response(request)
        user = api_user(request)
        if user is None or len(key) > 255:
            return self.get_response(request)
        slot = f"atelier:idem:{user.pk}:{hashlib.sha256(key.encode()).hexdigest()}"
        print_ = fingerprint(request)
        try:
            claimed = redis_client().set(
                slot, json.dumps({"state": IN_PROGRESS, "fp": print_}), nx=True, ex=IN_PROGRESS_SECONDS
            )
            if not claimed:
                return self.replay(slot, print_)
        except RedisError as exc:
            log.warning("idempotency unavailable: %s", exc)
            return self.get_response(request)
        response = self.get_response(request)
        self.remember(slot, print_, response)
        return response

    def replay(self, slot: str, print_: str) -> HttpResponse:
        raw = redis_client().get(slot)
        record = json.loads(raw) if raw else None
        if record is None:
            return JsonResponse(error_body("idempotency_key_in_use"), status=409)
        if record["fp"] != print_:
            return JsonResponse(error_body("idempotency_key_reused"), status=409)
        if record["state"] == IN_PROGRESS:
            return JsonResponse(error_body("idempotency_key_in_use"), status=409)
        response = HttpResponse(record["body"].encode(), status=record["status"])
        for name, value in record["headers"].items():
            response[name] = value
        response["Idempotent-Replayed"] = "true"
        return response

    def remember(self, slot: str, print_: str, response: HttpResponse) -> None:
        try:
            if response.status_code >= 500 or response.streaming:
                redis_client().delete(slot)  # a failure may be retried with the same key
                return
            kept = {
                h: response[h] for h in ("Content-Type", "Location", "Retry-After") if response.has_header(h)
            }
            record = {
                "state": "done",
                "fp": print_,
                "status": response.status_code,
                "headers": kept,
                "body": response.content.decode("utf-8", "replace"),
            }
            redis_client().set(slot, json.dumps(record), ex=TTL_SECONDS)
        except RedisError as exc:
            log.warning("could not remember an idempotent response: %s", exc)

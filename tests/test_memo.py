"""core/memo.py: a value read once per web request, and every time outside one."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test.utils import CaptureQueriesContext
from redis.client import Pipeline

from accounts.models import User
from core import memo
from core.memo import RequestMemoMiddleware, once
from generations import queues
from generations.positions import read_pool_state
from generations.workers import live_worker_count, pool_workers_key, waiting_for_worker
from webhooks.services import enabled_endpoints


def test_inside_a_request_a_value_is_computed_once_and_outside_every_time() -> None:
    calls: list[str] = []

    def read() -> int:
        calls.append("read")
        return len(calls)

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(f"{once('k', read)} {once('k', read)} {once('other', read)}")

    middleware = RequestMemoMiddleware(view)
    assert bytes(middleware(HttpRequest())).endswith(b"1 1 2")
    assert bytes(middleware(HttpRequest())).endswith(b"3 3 4")  # a new request reads again
    assert (once("k", read), once("k", read)) == (5, 6)  # outside a request: never kept


def test_a_submissions_pool_state_is_read_in_one_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    """read_pool_state reads the latest heartbeat, the live workers and the recent durations in
    one pipeline; afterwards in the request the three answer from it, as they would have read."""
    pool = f"memo-{uuid.uuid4().hex[:8]}"
    client = queues.redis_client()
    client.zadd(pool_workers_key(pool), {"w1": time.time(), "w2": time.time()})
    queues.record_duration(pool, 3.0, at=time.time())
    queues.record_duration(pool, 5.0, at=time.time())
    trips: list[str] = []
    command, pipeline = redis.Redis.execute_command, Pipeline.execute

    def one_command(*args: Any, **kwargs: Any) -> Any:
        trips.append("command")
        return command(*args, **kwargs)

    def one_pipeline(*args: Any, **kwargs: Any) -> Any:
        trips.append("pipeline")
        return pipeline(*args, **kwargs)

    monkeypatch.setattr(redis.Redis, "execute_command", one_command)
    monkeypatch.setattr(Pipeline, "execute", one_pipeline)
    counted: dict[str, list[str]] = {}

    def view(request: HttpRequest) -> HttpResponse:
        read_pool_state(pool)
        counted["read"] = list(trips)
        answers = (waiting_for_worker(pool), live_worker_count(pool), queues.mean_duration(pool))
        counted["answers"] = trips[len(counted["read"]) :]
        return HttpResponse(repr(answers))

    try:
        assert bytes(RequestMemoMiddleware(view)(HttpRequest())).endswith(b"(False, 2, 4.0)")
        assert counted == {"read": ["pipeline"], "answers": []}
        # Outside a request nothing is kept: each reads Redis, with the same answers.
        del trips[:]
        answers = (waiting_for_worker(pool), live_worker_count(pool), queues.mean_duration(pool))
        assert answers == (False, 2, 4.0) and len(trips) == 3
    finally:
        client.delete(pool_workers_key(pool), queues.durations_key(pool))


@pytest.mark.django_db
def test_a_scope_reads_a_users_webhook_endpoints_once_for_all_its_events() -> None:
    """What a worker's batch does (core.memo.scope around its transaction): every event of one
    user reads that user's endpoints once; outside a scope each event reads them."""
    user = User.objects.create(username="scoped")
    with CaptureQueriesContext(connection) as outside:
        enabled_endpoints(user.pk, None)
        enabled_endpoints(user.pk, None)
    with CaptureQueriesContext(connection) as inside, memo.scope():
        enabled_endpoints(user.pk, None)
        with memo.scope():  # a nested block shares the outer one's answers
            enabled_endpoints(user.pk, None)
    assert (len(outside.captured_queries), len(inside.captured_queries)) == (2, 1)

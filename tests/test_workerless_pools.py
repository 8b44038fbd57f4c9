"""A pool without a live worker past ATELIER_WORKERLESS_SECONDS: its queued jobs say they wait for
one (no ETA), in the resource, on submission and in events; /readyz is degraded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.test import Client

from generations.dispatcher import WORKERLESS_KEY, tell_workerless_pools
from generations.registry import default_model
from generations.workers import pool_workers_key
from gpu_worker.heartbeat import Heartbeat
from tests.api_support import Api
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

BODY = {"prompt": "a boat", "width": 64, "height": 64, "steps": 2}


@pytest.fixture(autouse=True)
def no_workers(settings: Any) -> Iterator[None]:
    settings.ATELIER_WORKERLESS_SECONDS = 0
    connection = redis.Redis.from_url(django_settings.REDIS_URL)
    connection.delete(pool_workers_key(default_model().pool), WORKERLESS_KEY)
    yield
    connection.delete(WORKERLESS_KEY)


@pytest.fixture
def worker() -> Iterator[Heartbeat]:
    beat = Heartbeat("workerless-test-worker", {"pools": [default_model().pool], "device": "cpu"})
    beat.start()
    yield beat
    beat.stop()


def queued_events(api: Api, generation_id: str) -> list[dict[str, Any]]:
    deliveries = WebhookDelivery.objects.filter(event_type="generation.queued").order_by("created_at")
    return [d.payload for d in deliveries if d.payload["id"] == generation_id]


def test_a_submission_to_a_pool_without_workers_says_it_waits_for_one(owner: Api, client: Client) -> None:
    body = owner.post("/api/v1/generations", BODY).json()
    assert (body["status"], body["waiting_reason"], body["eta_seconds"]) == (
        "queued",
        "waiting_for_worker",
        None,
    )
    assert owner.get(body["url"]).json()["waiting_reason"] == "waiting_for_worker"
    assert client.get("/readyz").json()["status"] == "degraded"


def test_with_a_live_worker_a_queued_job_has_an_eta_and_no_reason(owner: Api, worker: Heartbeat) -> None:
    body = owner.post("/api/v1/generations", BODY).json()
    assert body["waiting_reason"] is None
    assert body["eta_seconds"] is not None


def test_queued_jobs_hear_when_their_pool_loses_and_regains_its_workers(owner: Api) -> None:
    assert owner.user is not None
    WebhookEndpoint.objects.create(user=owner.user, url="https://hooks.example.com/a", secret="s")
    beat = Heartbeat("workerless-test-worker", {"pools": [default_model().pool], "device": "cpu"})
    beat.start()
    try:
        body = owner.post("/api/v1/generations", BODY).json()
        assert tell_workerless_pools() == 0
    finally:
        beat.stop()  # a clean stop leaves the pool at once
    assert tell_workerless_pools() == 1
    assert tell_workerless_pools() == 0  # told once
    told = queued_events(owner, body["id"])[-1]
    assert (told["waiting_reason"], told["eta_seconds"]) == ("waiting_for_worker", None)
    beat = Heartbeat("workerless-test-worker-2", {"pools": [default_model().pool], "device": "cpu"})
    beat.start()
    try:
        assert tell_workerless_pools() == 1
    finally:
        beat.stop()
    back = queued_events(owner, body["id"])[-1]
    assert "waiting_reason" not in back
    assert back["eta_seconds"] is not None

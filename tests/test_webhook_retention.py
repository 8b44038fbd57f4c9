"""The webhook tables stay bounded: no previews in stored payloads, finished deliveries kept for
a while only, the log read a page at a time (issue 17, Medium 8)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from accounts.services import api_key_create
from generations.events import record_webhooks
from webhooks import services
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


def endpoint_of(name: str) -> tuple[User, WebhookEndpoint]:
    user = User.objects.create_user(name)
    return user, user.webhooks.create(url="https://hooks.example.com/a", secret="whsec_" + "A" * 44)


def test_progress_previews_are_not_kept_in_delivery_payloads() -> None:
    user, _ = endpoint_of("previewer")
    preview = "data:image/jpeg;base64," + "A" * 20_000
    event = {"type": "generation.progress", "id": "g-1", "step": 3, "preview": preview, "at": "now"}
    record_webhooks(user.pk, event)
    payload = WebhookDelivery.objects.get().payload
    assert "preview" not in payload and payload["step"] == 3


def test_finished_deliveries_past_their_retention_are_deleted(settings: Any) -> None:
    settings.ATELIER_WEBHOOK_RETENTION_DAYS = 30
    _, endpoint = endpoint_of("keeper")
    old = timezone.now() - timedelta(days=31)
    rows = {
        "old-ok": ("succeeded", old),
        "old-failed": ("failed", old),
        "old-pending": ("pending", old),  # still being retried: kept whatever its age
        "new-ok": ("succeeded", timezone.now()),
    }
    for key, (status, created) in rows.items():
        delivery = WebhookDelivery.objects.create(
            id=key, endpoint=endpoint, event_type="x", payload={}, status=status, created_at=created
        )
        WebhookAttempt.objects.create(delivery=delivery, status_code=200)
    assert services.delete_old_deliveries() == 2
    assert sorted(WebhookDelivery.objects.values_list("id", flat=True)) == ["new-ok", "old-pending"]
    assert WebhookAttempt.objects.count() == 2


def test_the_deliveries_api_reads_a_page_at_a_time() -> None:
    user, endpoint = endpoint_of("pager")
    for number in range(25):
        WebhookDelivery.objects.create(id=f"msg_{number:03}", endpoint=endpoint, event_type="x", payload={})
    _, key = api_key_create(user=user)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    first = api.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries").json()
    assert len(first["data"]) == 20 and first["next"]
    second = api.get(first["next"]).json()
    assert len(second["data"]) == 5 and second["next"] is None
    seen = {d["id"] for d in first["data"] + second["data"]}
    assert len(seen) == 25


def test_the_webhooks_page_loads_only_the_deliveries_it_shows() -> None:
    user, endpoint = endpoint_of("browser")
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(id=f"msg_{n:04}", endpoint=endpoint, event_type="x", payload={}) for n in range(300)
    )
    page = Client()
    page.force_login(user)
    with CaptureQueriesContext(connection) as queries:
        html = page.get("/accounts/webhooks/").content.decode()
    assert html.count("<code>msg_") == 20
    deliveries_query = next(q["sql"] for q in queries if 'FROM "webhooks_webhookdelivery"' in q["sql"])
    assert "ROW_NUMBER" in deliveries_query.upper()  # a window per endpoint, not every row

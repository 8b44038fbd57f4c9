"""Endpoints, and recording deliveries for events (webhooks/sender.py sends them)."""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from datetime import timedelta
from functools import cache
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection
from django.utils import timezone
from redis.exceptions import RedisError

from core import sql
from core.memo import once
from webhooks import signing
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.targets import check_url

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_MS = 500  # at most two progress events a second per generation and endpoint
CLEANUP_INTERVAL_SECONDS = 600


def message_id() -> str:
    return "msg_" + secrets.token_hex(12)


class GenerationWebhook(NamedTuple):
    """The generation's own endpoint and the events it asked for, as the caller already knows them."""

    endpoint_id: uuid.UUID | None
    events: list[str]


def record_deliveries(
    user_id: int, event: dict[str, Any], *, generation_webhook: GenerationWebhook | None = None
) -> int:
    """A pending delivery per endpoint of the user that wants this event, and for the
    generation's own `webhook_url` if it named one (the caller, which knows the generation,
    passes that endpoint and the events it asked for as `generation_webhook`)."""
    own_id = generation_webhook.endpoint_id if generation_webhook else None
    endpoints = []
    for endpoint in enabled_endpoints(user_id, own_id):
        if endpoint.pk == own_id:
            assert generation_webhook is not None
            if not generation_webhook.events or event["type"] in generation_webhook.events:
                endpoints.append(endpoint)
        elif endpoint.wants(event["type"]):
            endpoints.append(endpoint)
    if not endpoints:
        return 0
    # A progress preview (a data: URL of some KB) is for live sockets; the table keeps no copies.
    stored = {key: value for key, value in event.items() if key != "preview"}
    rows = []
    for endpoint in endpoints:
        if event["type"] == "generation.progress" and not progress_due(endpoint, event):
            continue
        rows.append(
            WebhookDelivery(id=message_id(), endpoint=endpoint, event_type=event["type"], payload=stored)
        )
    WebhookDelivery.objects.bulk_create(rows)
    return len(rows)


@cache
def enabled_endpoints_sql(with_own: bool) -> str:
    endpoints = sql.table(WebhookEndpoint)
    own = " OR id = %s" if with_own else ""
    return (
        f"SELECT {sql.columns(WebhookEndpoint)} FROM {endpoints} "  # noqa: S608 (names from the models)
        f"WHERE enabled AND ((user_id = %s AND NOT per_generation){own}) ORDER BY created_at DESC"
    )


def enabled_endpoints(user_id: int, own_id: uuid.UUID | None) -> list[WebhookEndpoint]:
    """The user's enabled endpoints that hear all their generations, and the generation's own;
    read once per request or ``core.memo.scope()`` block (a batch's events), not once per event."""
    return once(("webhook_endpoints", user_id, own_id), lambda: read_endpoints(user_id, own_id))


def read_endpoints(user_id: int, own_id: uuid.UUID | None) -> list[WebhookEndpoint]:
    # Every event runs this: SQL rather than the ORM (core/sql.py says why).
    if own_id is None:
        rows = sql.fetch_all(enabled_endpoints_sql(False), [user_id])
    else:
        own = WebhookEndpoint._meta.pk.get_db_prep_value(own_id, connection)
        rows = sql.fetch_all(enabled_endpoints_sql(True), [user_id, own])
    return [sql.instance(WebhookEndpoint, row) for row in rows]


def is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def endpoint_for_generation(*, user: Any, url: str) -> tuple[WebhookEndpoint, bool]:
    """The per-generation endpoint for this URL, made on first use; True when just made (its
    secret is then shown once, in the submit response)."""
    existing = WebhookEndpoint.objects.filter(user=user, url=url, per_generation=True).first()
    if existing is not None:
        return existing, False
    check_url(url)
    endpoint = WebhookEndpoint.objects.create(
        user=user, url=url, per_generation=True, secret=signing.new_secret(), description="per generation"
    )
    return endpoint, True


def progress_due(endpoint: WebhookEndpoint, event: dict[str, Any]) -> bool:
    from core.redis import redis_client

    key = f"atelier:webhook-progress:{endpoint.pk}:{event.get('id')}"
    try:
        return bool(redis_client().set(key, 1, nx=True, px=PROGRESS_INTERVAL_MS))
    except RedisError:
        return True


def send_test_event(endpoint: WebhookEndpoint) -> WebhookDelivery:
    event = {"type": "webhook.test", "id": str(endpoint.pk), "at": timezone.now().isoformat()}
    return WebhookDelivery.objects.create(
        id=message_id(), endpoint=endpoint, event_type=event["type"], payload=event
    )


def create_endpoint(*, user: Any, url: str, events: list[str], description: str = "") -> WebhookEndpoint:
    check_url(url)
    return WebhookEndpoint.objects.create(
        user=user, url=url, events=events, description=description, secret=signing.new_secret()
    )


def delete_old_deliveries() -> int:
    """Delete finished deliveries (and their attempts) older than ATELIER_WEBHOOK_RETENTION_DAYS,
    a thousand at a time; pending ones stay until they finish. The number deleted."""
    cutoff = timezone.now() - timedelta(days=settings.ATELIER_WEBHOOK_RETENTION_DAYS)
    finished = WebhookDelivery.objects.filter(
        status__in=[DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED], created_at__lt=cutoff
    )
    deleted = 0
    while ids := list(finished.values_list("pk", flat=True)[:1000]):
        deleted += WebhookDelivery.objects.filter(pk__in=ids).delete()[1].get("webhooks.WebhookDelivery", 0)
    return deleted


_next_cleanup = 0.0


def delete_old_deliveries_now_and_then() -> int:
    """``delete_old_deliveries`` at most every CLEANUP_INTERVAL_SECONDS (the dispatcher ticks often)."""
    global _next_cleanup
    if time.monotonic() < _next_cleanup:
        return 0
    _next_cleanup = time.monotonic() + CLEANUP_INTERVAL_SECONDS
    return delete_old_deliveries()

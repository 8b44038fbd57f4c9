"""Recording deliveries for events, and sending due deliveries with retries and backoff."""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid
from datetime import timedelta
from functools import cache
from typing import Any, NamedTuple

import requests
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from redis.exceptions import RedisError

from core import sql
from webhooks import signing
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.targets import UnsafeUrl, check_url

log = logging.getLogger(__name__)

# Seconds before each retry: about 27 hours in all, so a receiver may be down for a day.
BACKOFF = [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200]
PROGRESS_INTERVAL_MS = 500  # at most two progress events a second per generation and endpoint
TIMEOUT_SECONDS = 5


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
    rows = []
    for endpoint in endpoints:
        if event["type"] == "generation.progress" and not progress_due(endpoint, event):
            continue
        rows.append(
            WebhookDelivery(id=message_id(), endpoint=endpoint, event_type=event["type"], payload=event)
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
    """The user's enabled endpoints that hear all their generations, and the generation's own."""
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


def deliver_due(limit: int = 50) -> int:
    """Send the deliveries that are due; the dispatcher calls this every tick."""
    now = timezone.now()
    due = WebhookDelivery.objects.filter(
        Q(status=DeliveryStatus.PENDING) & Q(next_attempt_at__lte=now)
    ).select_related("endpoint")[:limit]
    sent = 0
    for delivery in list(due):
        # Claim by moving the next attempt ahead; another dispatcher then skips it.
        claimed = WebhookDelivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.PENDING, next_attempt_at=delivery.next_attempt_at
        ).update(next_attempt_at=now + timedelta(seconds=TIMEOUT_SECONDS * 4))
        if claimed:
            attempt(delivery)
            sent += 1
    return sent


def attempt(delivery: WebhookDelivery) -> None:
    endpoint = delivery.endpoint
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    started = time.monotonic()
    status_code, excerpt, error = None, "", ""
    try:
        check_url(endpoint.url)
        headers = signing.headers(endpoint.secret, delivery.id, int(time.time()), body)
        response = requests.post(
            endpoint.url, data=body, headers=headers, timeout=TIMEOUT_SECONDS, allow_redirects=False
        )
        status_code, excerpt = response.status_code, response.text[:500]
    except UnsafeUrl as exc:
        error = f"refused: {exc}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    elapsed = int((time.monotonic() - started) * 1000)
    succeeded = status_code is not None and 200 <= status_code < 300
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            status_code=status_code,
            response_excerpt=excerpt,
            error=error,
            duration_ms=elapsed,
        )
        attempts = delivery.attempts + 1
        if succeeded:
            fields: dict[str, Any] = {"status": DeliveryStatus.SUCCEEDED, "delivered_at": timezone.now()}
        elif attempts > len(BACKOFF):
            fields = {"status": DeliveryStatus.FAILED}
        else:
            fields = {"next_attempt_at": timezone.now() + timedelta(seconds=BACKOFF[attempts - 1])}
        WebhookDelivery.objects.filter(pk=delivery.pk).update(attempts=attempts, **fields)


def create_endpoint(*, user: Any, url: str, events: list[str], description: str = "") -> WebhookEndpoint:
    check_url(url)
    return WebhookEndpoint.objects.create(
        user=user, url=url, events=events, description=description, secret=signing.new_secret()
    )

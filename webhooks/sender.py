"""Sending due deliveries from the dispatcher without waiting for them.

Each tick, ``deliver_due`` records the attempts that finished since the last tick and hands newly
due deliveries to a bounded pool of threads. The threads only talk to receivers (transport.py);
every database read and write stays on the dispatcher's thread. An endpoint has at most one
delivery in flight, and an endpoint that failed waits (back-off growing with its failures in a
row) before it gets the next one, so a slow or dead receiver holds at most one thread for at
most the deadline, and never the dispatcher's other duties.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from webhooks import signing, transport
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)

# Seconds before each retry of a delivery: about 27 hours in all, so a receiver may be down for a day.
BACKOFF = [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200]
# Seconds an endpoint waits after failures in a row (1, 2, ...) before its next delivery.
ENDPOINT_BACKOFF = [5, 15, 60, 300, 900]
LEASE_MARGIN_SECONDS = 60  # a claimed delivery is due again this long after its deadline


class Sender:
    """The deliveries in flight, by delivery id, with their endpoints."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook")
        self.in_flight: dict[str, tuple[uuid.UUID, Future[transport.Outcome]]] = {}
        self.lock = threading.Lock()

    def free_slots(self) -> int:
        with self.lock:
            return min(self.workers, settings.ATELIER_WEBHOOK_CONCURRENCY) - len(self.in_flight)

    def busy_endpoints(self) -> set[uuid.UUID]:
        with self.lock:
            return {endpoint_id for endpoint_id, _ in self.in_flight.values()}

    def start(self, delivery: WebhookDelivery) -> None:
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        headers = signing.headers(delivery.endpoint.secret, delivery.id, int(time.time()), body)
        future = self.pool.submit(
            transport.post,
            delivery.endpoint.url,
            body,
            headers,
            deadline_seconds=settings.ATELIER_WEBHOOK_DEADLINE,
        )
        with self.lock:
            self.in_flight[delivery.id] = (delivery.endpoint_id, future)

    def finished(self) -> list[tuple[str, transport.Outcome]]:
        with self.lock:
            done = [(key, future) for key, (_, future) in self.in_flight.items() if future.done()]
            for key, _ in done:
                del self.in_flight[key]
        return [(key, future.result()) for key, future in done]

    def wait_idle(self, seconds: float) -> bool:
        """Wait until nothing is in flight (tests, and a dispatcher that is stopping)."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            with self.lock:
                if all(future.done() for _, future in self.in_flight.values()):
                    return True
            time.sleep(0.01)
        return False


_sender: Sender | None = None
_sender_lock = threading.Lock()


def sender() -> Sender:
    global _sender
    with _sender_lock:
        if _sender is None:
            _sender = Sender(max(1, settings.ATELIER_WEBHOOK_CONCURRENCY))
        return _sender


def deliver_due(limit: int = 50) -> int:
    """Record the attempts that finished and start the deliveries that are due; the dispatcher
    calls this every tick. The number of attempts recorded."""
    recorded = record_finished()
    start_due(limit)
    return recorded


def record_finished() -> int:
    finished = sender().finished()
    for delivery_id, outcome in finished:
        record_attempt(delivery_id, outcome)
    return len(finished)


def start_due(limit: int) -> int:
    active = sender()
    free = active.free_slots()
    if free <= 0:
        return 0
    now = timezone.now()
    busy = active.busy_endpoints()
    due = (
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(endpoint__retry_after__isnull=True) | Q(endpoint__retry_after__lte=now))
        .exclude(endpoint_id__in=busy)
        .select_related("endpoint")
        .order_by("next_attempt_at")[:limit]
    )
    lease = now + timedelta(seconds=settings.ATELIER_WEBHOOK_DEADLINE + LEASE_MARGIN_SECONDS)
    started = 0
    for delivery in list(due):
        if started == free:
            break
        if delivery.endpoint_id in busy:
            continue  # one delivery per endpoint at a time
        # Claim by moving the next attempt ahead; another dispatcher then skips it.
        claimed = WebhookDelivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.PENDING, next_attempt_at=delivery.next_attempt_at
        ).update(next_attempt_at=lease)
        if claimed:
            active.start(delivery)
            busy.add(delivery.endpoint_id)
            started += 1
    return started


def record_attempt(delivery_id: str, outcome: transport.Outcome) -> None:
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update()
            .filter(pk=delivery_id, status=DeliveryStatus.PENDING)
            .first()
        )
        if delivery is None:
            return  # deleted with its endpoint while in flight
        WebhookAttempt.objects.create(
            delivery=delivery,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
        now = timezone.now()
        attempts = delivery.attempts + 1
        if outcome.succeeded:
            fields: dict[str, Any] = {"status": DeliveryStatus.SUCCEEDED, "delivered_at": now}
        elif attempts > len(BACKOFF):
            fields = {"status": DeliveryStatus.FAILED}
        else:
            fields = {"next_attempt_at": now + timedelta(seconds=BACKOFF[attempts - 1])}
        WebhookDelivery.objects.filter(pk=delivery.pk).update(attempts=attempts, **fields)
        endpoint = WebhookEndpoint.objects.filter(pk=delivery.endpoint_id)
        if outcome.succeeded:
            endpoint.update(failures_in_a_row=0, retry_after=None)
        else:
            failures = endpoint.values_list("failures_in_a_row", flat=True).first() or 0
            wait = ENDPOINT_BACKOFF[min(failures, len(ENDPOINT_BACKOFF) - 1)]
            endpoint.update(failures_in_a_row=failures + 1, retry_after=now + timedelta(seconds=wait))
    if not outcome.succeeded:
        log.info("webhook %s not delivered: %s", delivery_id, outcome.error or outcome.status_code)

"""Events, one schema for WebSocket, webhooks and the API (ARCHITECTURE.md section 5)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone

from core.events import iso
from generations.models import Generation
from generations.positions import eta_seconds, queue_position
from generations.publisher import channel_message, shared_publisher, user_group
from generations.workers import WAITING_FOR_WORKER, waiting_for_worker
from webhooks.services import GenerationWebhook, is_uuid, record_deliveries

__all__ = ["channel_message", "user_group"]
log = logging.getLogger(__name__)
# push(user_id, event): sends a built event to the user's sockets.
Push = Callable[[int, dict[str, Any]], None]


def build_event(generation: Generation, event_type: str, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": event_type,
        "id": str(generation.id),
        "status": generation.status,
        "step": generation.step,
        "steps": generation.total_steps or generation.steps,
        "progress": progress_fraction(generation),
        "queue_position": None,
        "at": iso(timezone.now()),
    }
    event.update(extra)
    return event


def progress_fraction(generation: Generation) -> float:
    total = generation.total_steps or generation.steps
    if generation.status == "succeeded":
        return 1.0
    return round(generation.step / total, 4) if total else 0.0


def send_now(user_id: int, event: dict[str, Any], generation: Generation | None = None) -> None:
    """Push the event to the user's sockets (via this process's publisher thread) and record a
    webhook delivery for each endpoint that wants it."""
    shared_publisher().publish(user_id, event)
    record_webhooks(user_id, event, generation)


def record_webhooks(user_id: int, event: dict[str, Any], generation: Generation | None = None) -> None:
    """``generation``, when the caller has it, saves looking up its own webhook."""
    try:
        record_deliveries(user_id, event, generation_webhook=generation_webhook(event, generation))
    except DatabaseError as exc:
        log.warning("could not record webhook deliveries for %s: %s", event["type"], exc)


def generation_webhook(event: dict[str, Any], generation: Generation | None) -> GenerationWebhook | None:
    """The generation's own endpoint and the events it asked for; looked up when the caller
    does not hold the generation."""
    if generation is not None:
        return GenerationWebhook(generation.webhook_id, generation.webhook_events)
    if not str(event.get("type", "")).startswith("generation.") or not is_uuid(event.get("id")):
        return None
    row = (
        Generation.objects.filter(pk=event["id"], webhook__isnull=False)
        .values_list("webhook_id", "webhook_events")
        .first()
    )
    return GenerationWebhook(row[0], row[1] or []) if row else None


def announce(generation: Generation, event_type: str, push: Push | None = None, **extra: Any) -> None:
    """Write the event's webhook deliveries now, in the caller's transaction (an outbox: they
    commit or roll back with the state change it tells of), and push it to the owner's sockets
    once that commits: the DB row is the truth, the push a hint. ``push`` sends a built event (the
    worker passes its own publisher's, so its events leave in order with its progress events)."""
    if event_type == "generation.queued":
        if "queue_position" not in extra:
            position = queue_position(generation)
            extra.update(queue_position=position, eta_seconds=eta_seconds(generation, position))
        if waiting_for_worker(generation.pool):
            extra.update(eta_seconds=None, waiting_reason=WAITING_FOR_WORKER)
    event = build_event(generation, event_type, **extra)
    record_deliveries(generation.user_id, event, generation_webhook=generation_webhook(event, generation))
    send = push or shared_publisher().publish
    user_id = generation.user_id
    transaction.on_commit(lambda: send(user_id, event))

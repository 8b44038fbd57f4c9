"""Events, one schema for WebSocket, webhooks and the API (ARCHITECTURE.md section 5)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from generations.models import Generation

log = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def iso(value: Any) -> str | None:
    if value is None:
        return None
    return str(value.isoformat().replace("+00:00", "Z"))


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


def channel_message(event: dict[str, Any]) -> dict[str, Any]:
    return {"type": "generation.event", "event": event}


def send_now(user_id: int, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        send = async_to_sync(layer.group_send)
        if running_loop():
            # Called from a thread that runs an event loop (rare: an async caller that should
            # have awaited); send from a helper thread rather than fail.
            with ThreadPoolExecutor(1) as pool:
                pool.submit(send, user_group(user_id), channel_message(event)).result()
        else:
            send(user_group(user_id), channel_message(event))
    except (OSError, RedisError) as exc:
        # Redis is away: clients resync from the DB when they reconnect, so nothing is lost.
        log.warning("could not publish %s for %s: %s", event["type"], event["id"], exc)


def running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def publish_on_commit(generation: Generation, event_type: str, **extra: Any) -> None:
    """Publish after the surrounding transaction commits: the DB row is the truth, the push a hint."""
    if event_type == "generation.queued" and "queue_position" not in extra:
        from generations.selectors import eta_seconds, queue_position

        position = queue_position(generation)
        extra.update(queue_position=position, eta_seconds=eta_seconds(generation, position))
    event = build_event(generation, event_type, **extra)
    user_id = generation.user_id
    transaction.on_commit(lambda: send_now(user_id, event))

"""The primitives of the one event schema (ARCHITECTURE.md section 5) that every layer may use:
the event types and how a time is written. Building a generation's event is generations' job."""

from __future__ import annotations

from typing import Any

EVENT_TYPES = [
    "generation.queued",
    "generation.started",
    "generation.progress",
    "generation.succeeded",
    "generation.failed",
    "generation.canceled",
    "generation.preempted",
]


def iso(value: Any) -> str | None:
    """ISO-8601 in UTC with a ``Z``, as every event, resource and webhook writes times."""
    if value is None:
        return None
    return str(value.isoformat().replace("+00:00", "Z"))

"""Sends events without slowing the caller (a request, the denoising loop, the dispatcher).

One thread owns one event loop and one channel-layer connection, and sends in order: a new loop
per event (what ``async_to_sync`` does from a plain thread) would reconnect to Redis every time.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def workflow_group(user_id: int) -> str:
    """A user's ComfyUI sockets (api/comfy_ws.py): the worker's node-level messages go here, so
    that /ws/v1/events/ sees only generation events."""
    return f"workflow.{user_id}"


def channel_message(event: dict[str, Any]) -> dict[str, Any]:
    return {"type": "generation.event", "event": event}


class EventPublisher:
    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="event-publisher", daemon=True)
        self._thread.start()

    def publish(self, user_id: int, event: dict[str, Any]) -> None:
        self._queue.put((user_group(user_id), channel_message(event)))

    def send_to_group(self, group: str, message: dict[str, Any]) -> None:
        """Any channel-layer message, in order with the events."""
        self._queue.put((group, message))

    def flush(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        layer = get_channel_layer()
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                group, message = item
                if layer is not None:
                    loop.run_until_complete(layer.group_send(group, message))
            except Exception as exc:
                # A lost push costs nothing: clients resync from the DB on reconnect.
                kind = item[1].get("event", item[1]).get("type") if item else None
                log.warning("could not publish %s: %s", kind, exc)
            finally:
                self._queue.task_done()


_shared: EventPublisher | None = None
_shared_lock = threading.Lock()


def shared_publisher() -> EventPublisher:
    """The process's publisher, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = EventPublisher()
        return _shared

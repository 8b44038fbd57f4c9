"""Sends events without slowing the caller (a request, the denoising loop, the dispatcher).

One thread owns one event loop and one channel-layer connection, and sends in order: a new loop
per event (what ``async_to_sync`` does from a plain thread) would reconnect to Redis every time.

When the event path lags (events wait to be sent, or the channel layer is slow to take one) the
publisher thins what is only a hint, previews first: past ``ATELIER_EVENT_LAG_PREVIEWS`` seconds
progress events leave without their preview (and optional preview frames are dropped), past
``ATELIER_EVENT_LAG_PROGRESS`` only the latest unsent progress message of a generation is kept. A
change of status (queued, started, succeeded, failed, canceled) is never dropped, and what is sent
keeps its order. What was thinned is counted in Redis for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from redis.exceptions import RedisError

from core.group_send import GroupSender
from core.redis import redis_client

log = logging.getLogger(__name__)
THINNED_KEY = "atelier:events:thinned"  # a hash of counters: preview, progress
COUNTS_FLUSH_SECONDS = 1.0
PROGRESS = "generation.progress"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def workflow_group(user_id: int) -> str:
    """A user's ComfyUI sockets (api/comfy_ws.py): the worker's node-level messages go here, so
    that /ws/v1/events/ sees only generation events."""
    return f"workflow.{user_id}"


EVENT_MESSAGE = "generation.event"
# Events of one group waiting one behind the other leave in one channel message (a batch's
# started/progress/succeeded for one user: one group send instead of one each); consumers
# (generations/consumers.py, api/comfy_ws.py) handle both kinds.
EVENTS_MESSAGE = "generation.events"
MAX_EVENTS_PER_MESSAGE = 64


def channel_message(event: dict[str, Any]) -> dict[str, Any]:
    return {"type": EVENT_MESSAGE, "event": event}


def events_message(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """One message for these event messages (one group's, in order)."""
    if len(messages) == 1:
        return messages[0]
    return {"type": EVENTS_MESSAGE, "events": [message["event"] for message in messages]}


def thinned_counts() -> dict[str, int]:
    """Messages thinned so far by every publisher: previews left out, progress messages dropped."""
    raw = redis_client().hgetall(THINNED_KEY)
    counts = {"preview": 0, "progress": 0}
    counts.update({key.decode(): int(value) for key, value in raw.items()})
    return counts


@dataclass
class Outgoing:
    group: str
    message: dict[str, Any]
    at: float  # when it was handed over (the publisher's clock)
    # Messages with the same key replace each other under lag (a generation's progress); None:
    # never dropped.
    key: str | None = None
    # "frame": the whole message is a preview, dropped with previews; "event": its event's
    # preview field is left out; None: nothing to leave out.
    preview: str | None = None
    dropped: bool = False


class EventPublisher:
    def __init__(
        self,
        *,
        layer: Any = None,
        clock: Callable[[], float] = time.monotonic,
        preview_lag: float | None = None,
        progress_lag: float | None = None,
    ) -> None:
        self._layer = layer
        self._clock = clock
        self.preview_lag = settings.ATELIER_EVENT_LAG_PREVIEWS if preview_lag is None else preview_lag
        self.progress_lag = settings.ATELIER_EVENT_LAG_PROGRESS if progress_lag is None else progress_lag
        self._backlog: deque[Outgoing | None] = deque()
        self._latest: dict[str, list[Outgoing]] = {}  # unsent messages by key
        self._lock = threading.Condition()
        self._sending_since: float | None = None
        self._last_send_seconds = 0.0
        self._thinned: Counter[str] = Counter()
        self._flushed_at = clock()
        self._thread = threading.Thread(target=self._run, name="event-publisher", daemon=True)
        self._thread.start()

    def publish(self, user_id: int, event: dict[str, Any]) -> None:
        progress = event.get("type") == PROGRESS
        key = f"{event.get('id')}" if progress else None
        self._put(user_group(user_id), channel_message(event), key, "event" if progress else None)

    def send_to_group(
        self, group: str, message: dict[str, Any], *, key: str | None = None, preview_frame: bool = False
    ) -> None:
        """Any channel-layer message, in order with the events. ``key``: a progress message that a
        newer one with the same key replaces under lag; ``preview_frame``: dropped with previews."""
        self._put(group, message, key, "frame" if preview_frame else None)

    def lag(self) -> float:
        """Seconds the event path is behind: the oldest unsent message's wait, the send in flight,
        or the last send's duration, whichever is longest."""
        with self._lock:
            return self._lag(self._clock())

    def flush(self) -> None:
        """Wait until everything handed over was sent (or dropped)."""
        with self._lock:
            self._lock.wait_for(lambda: not self._backlog and self._sending_since is None)

    def close(self) -> None:
        with self._lock:
            self._backlog.append(None)
            self._lock.notify_all()
        self._thread.join(timeout=10)
        self._flush_counts(force=True)

    def _lag(self, now: float) -> float:
        waiting = next(
            (now - item.at for item in self._backlog if item is not None and not item.dropped), 0.0
        )
        sending = now - self._sending_since if self._sending_since is not None else 0.0
        return max(waiting, sending, self._last_send_seconds)

    def _put(self, group: str, message: dict[str, Any], key: str | None, preview: str | None) -> None:
        with self._lock:
            now = self._clock()
            item = Outgoing(group, message, now, key, preview)
            if key is not None:
                superseded = self._latest.setdefault(key, [])
                if superseded and self._lag(now) >= self.progress_lag:
                    for old in superseded:
                        old.dropped = True
                    self._thinned["progress"] += len(superseded)
                    superseded.clear()
                superseded.append(item)
            self._backlog.append(item)
            self._lock.notify_all()

    def _take(self) -> tuple[Outgoing | None, bool] | None:
        """The next message to send (None in it: close) and whether its preview must go; None
        after a second with nothing to send."""
        with self._lock:
            while self._lock.wait_for(lambda: bool(self._backlog), timeout=COUNTS_FLUSH_SECONDS):
                item = self._backlog.popleft()
                self._forget(item)
                if item is not None and item.dropped:
                    self._lock.notify_all()
                    continue
                now = self._clock()
                lagging = item is not None and self._lag(now) >= self.preview_lag
                self._sending_since = now
                return item, lagging
            return None

    def _forget(self, item: Outgoing | None) -> None:
        """``item`` leaves the backlog: it no longer stands for its key (call with the lock held)."""
        if item is None or item.key is None:
            return
        pending = self._latest.get(item.key, [])
        if item in pending:
            pending.remove(item)
        if not pending:
            self._latest.pop(item.key, None)

    def _behind(self, first: Outgoing) -> list[Outgoing]:
        """The events waiting right behind ``first`` for its group: they leave in its message."""
        found: list[Outgoing] = []
        if first.message.get("type") != EVENT_MESSAGE:
            return found
        with self._lock:
            while self._backlog and len(found) < MAX_EVENTS_PER_MESSAGE - 1:
                item = self._backlog[0]
                if item is None or item.group != first.group or item.message.get("type") != EVENT_MESSAGE:
                    break
                self._backlog.popleft()
                self._forget(item)
                if not item.dropped:
                    found.append(item)
        return found

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        layer = self._layer if self._layer is not None else get_channel_layer()
        deadline = settings.ATELIER_EVENT_SEND_DEADLINE
        sender = GroupSender(layer, deadline) if GroupSender.supports(layer) else None
        while True:
            taken = self._take()
            if taken is None:
                self._flush_counts()
                continue
            item, drop_preview = taken
            sent = False
            try:
                if item is None:
                    if sender is not None:
                        sender.close()
                    return
                batch = [item, *self._behind(item)]
                messages = [
                    self._without_preview(one) if drop_preview and one.preview else one.message
                    for one in batch
                ]
                kept = [message for message in messages if message is not None]
                if kept and layer is not None:
                    sent = True
                    if sender is not None:  # two round trips, no event loop (core/group_send.py)
                        sender.send(item.group, events_message(kept))
                    else:
                        send = layer.group_send(item.group, events_message(kept))
                        loop.run_until_complete(asyncio.wait_for(send, deadline))
            except Exception as exc:
                # A lost push costs nothing: clients resync from the DB on reconnect.
                kind = item.message.get("event", item.message).get("type") if item else None
                log.warning("could not publish %s: %s", kind, exc)
            finally:
                with self._lock:
                    if sent and self._sending_since is not None:  # a dropped frame says nothing
                        self._last_send_seconds = self._clock() - self._sending_since
                    self._sending_since = None
                    self._lock.notify_all()
                self._flush_counts()

    def _without_preview(self, item: Outgoing) -> dict[str, Any] | None:
        """The message without its preview (None: the message was only a preview)."""
        event = item.message.get("event", {})
        if item.preview == "event" and not event.get("preview"):
            return item.message  # nothing to leave out
        with self._lock:
            self._thinned["preview"] += 1
        if item.preview == "frame":
            return None
        return {**item.message, "event": {key: value for key, value in event.items() if key != "preview"}}

    def _flush_counts(self, *, force: bool = False) -> None:
        """Add this publisher's counts to the shared ones, at most once a second (best effort)."""
        with self._lock:
            if not self._thinned or (not force and self._clock() - self._flushed_at < COUNTS_FLUSH_SECONDS):
                return
            counts, self._thinned = self._thinned, Counter()
            self._flushed_at = self._clock()
        try:
            pipe = redis_client().pipeline(transaction=False)
            for field, count in counts.items():
                if count:
                    pipe.hincrby(THINNED_KEY, field, count)
            pipe.execute()
        except RedisError as exc:
            log.warning("could not record thinned events: %s", exc)


_shared: EventPublisher | None = None
_shared_lock = threading.Lock()


def shared_publisher() -> EventPublisher:
    """The process's publisher, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = EventPublisher()
        return _shared

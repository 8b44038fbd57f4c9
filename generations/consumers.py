"""``/ws/v1/events/``: a user's generation events, a snapshot first, then pushes."""

from __future__ import annotations

import json
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone

from accounts.models import User
from accounts.scopes import READ
from accounts.ws_auth import DatabaseFreePushes, RecheckedAccess, granted, refuse_for_scope
from core.errors import ApiError, error_body
from core.events import iso
from generations.events import user_group
from generations.selectors import active_generations_of, generation_of, generation_resource
from generations.services import cancel_generation

CLOSE_UNAUTHENTICATED = 4401


@database_sync_to_async
def snapshot_of(user: User) -> list[dict[str, Any]]:
    return [generation_resource(g) for g in active_generations_of(user)]


@database_sync_to_async
def handle_request(user: User, kind: str, generation_id: Any) -> dict[str, Any]:
    generation = generation_of(user, generation_id)
    if generation is None:
        return {
            "type": "error",
            "request": kind,
            "id": generation_id,
            **error_body("not_found", "No such generation."),
        }
    if kind == "generation.cancel":
        try:
            generation = cancel_generation(generation=generation)
        except ApiError as exc:
            return {"type": "error", "request": kind, "id": generation_id, **exc.body()}
    return {"type": "generation", "request": kind, "generation": generation_resource(generation)}


class EventsConsumer(RecheckedAccess, DatabaseFreePushes, AsyncJsonWebsocketConsumer):
    group: str | None = None
    pushed = frozenset({"generation.event", "generation.events"})

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not granted(self.scope, READ):
            await refuse_for_scope(self, READ)
            return
        self.checked_at = time.monotonic()
        self.group = user_group(user.id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        generations = await snapshot_of(user)
        await self.send_json({"type": "snapshot", "generations": generations, "at": iso(timezone.now())})

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return json.loads(text_data)
        except ValueError:
            return None  # answered as a malformed request, instead of dropping the connection

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not await self.still_allowed():
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        kind = content.get("type") if isinstance(content, dict) else None
        if kind not in ("generation.get", "generation.cancel"):
            await self.send_json(
                {"type": "error", **error_body("malformed_request", "Unknown message type.")}
            )
            return
        await self.send_json(await handle_request(self.scope["user"], kind, content.get("id")))

    async def generation_event(self, message: dict[str, Any]) -> None:
        if not await self.still_allowed():
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self.send_json(message["event"])

    async def generation_events(self, message: dict[str, Any]) -> None:
        """Several of the user's events in one channel message (generations/publisher.py): each
        its own socket message, in order."""
        if not await self.still_allowed():
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        for event in message["events"]:
            await self.send_json(event)

    async def account_closed(self, message: dict[str, Any]) -> None:
        """The member closed their account (generations/leaving.py): the socket ends now."""
        await self.close(code=CLOSE_UNAUTHENTICATED)

"""ComfyUI's WebSocket, ``/ws?clientId=``: the messages its clients wait for, made from the
user's generation events and the worker's node-level messages (COMFYUI_API.md section 1).

``status`` goes to every socket of the user; a prompt's own messages only to the socket whose
``clientId`` submitted it. The worker sends ``execution_cached``, ``executing`` (a node),
``progress``, ``executed`` and binary previews; this consumer adds ``execution_start`` and, once
the row is final (the history written), ``execution_success`` / ``execution_error`` /
``execution_interrupted`` and ``executing`` with ``node: null``.

Sampling previews come as binary frames: type 1 (``PREVIEW_IMAGE``: a uint32 format, then the
JPEG), or type 4 (``PREVIEW_IMAGE_WITH_METADATA``: a uint32 length, the JSON metadata naming the
node and prompt, then the image) for a client that announced ``supports_preview_metadata`` in its
``feature_flags`` message, as ComfyUI does.
"""

from __future__ import annotations

import json
import struct
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts.models import User
from accounts.scopes import READ
from accounts.ws_auth import DatabaseFreePushes, RecheckedAccess, granted, refuse_for_scope
from generations.models import Generation, GenerationKind
from generations.publisher import user_group, workflow_group
from workflows.selectors import queue_remaining

CLOSE_UNAUTHENTICATED = 4401
PREVIEW_IMAGE, PREVIEW_IMAGE_WITH_METADATA = 1, 4  # binary event types
JPEG = 1


def server_feature_flags() -> dict[str, Any]:
    """What this server supports, as ComfyUI answers a client's ``feature_flags`` (and /features)."""
    return {"supports_preview_metadata": True, "max_upload_size": settings.ATELIER_UPLOAD_MAX_BYTES}


def preview_frame(jpeg: bytes, metadata: dict[str, Any], *, with_metadata: bool) -> bytes:
    """A sampling preview as ComfyUI frames it: type 4 with its metadata, or type 1."""
    if not with_metadata:
        return struct.pack(">II", PREVIEW_IMAGE, JPEG) + jpeg
    header = json.dumps({**metadata, "image_type": "image/jpeg"}).encode()
    return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(header)) + header + jpeg


@database_sync_to_async
def remaining(user: User) -> int:
    return queue_remaining(user)


@database_sync_to_async
def workflow_of(user: User, generation_id: str) -> dict[str, Any] | None:
    row = (
        Generation.objects.filter(pk=generation_id, user=user, kind=GenerationKind.WORKFLOW)
        .values("workflow", "error_code", "error_message")
        .first()
    )
    return dict(row) if row else None


def now_ms() -> int:
    return int(time.time() * 1000)


class ComfyConsumer(RecheckedAccess, DatabaseFreePushes, AsyncWebsocketConsumer):
    groups_joined: tuple[str, ...] = ()
    # their queries go through database_sync_to_async
    pushed = frozenset({"workflow.message", "generation.event", "generation.events"})
    preview_metadata = False  # until the client announces it in feature_flags

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not granted(self.scope, READ):
            await refuse_for_scope(self, READ)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.client_id = (query.get("clientId") or [""])[0] or uuid.uuid4().hex
        self.groups_joined = (user_group(user.id), workflow_group(user.id))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        self.checked_at = time.monotonic()
        await self.accept()
        await self.send_status(sid=True)

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = json.loads(text_data or "{}")
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "feature_flags":
            flags = message.get("data")
            self.preview_metadata = isinstance(flags, dict) and flags.get("supports_preview_metadata") is True
            await self.send_message("feature_flags", server_feature_flags())

    async def send_message(self, kind: str, data: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"type": kind, "data": data}))

    async def send_status(self, *, sid: bool = False) -> None:
        data: dict[str, Any] = {
            "status": {"exec_info": {"queue_remaining": await remaining(self.scope["user"])}}
        }
        if sid:
            data["sid"] = self.client_id
        await self.send_message("status", data)

    async def workflow_message(self, message: dict[str, Any]) -> None:
        """A node-level message from the worker, for the socket that submitted the prompt."""
        if message.get("client_id") != self.client_id:
            return
        if not await self.still_allowed():
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if "preview" in message:
            metadata = message["metadata"]
            frame = preview_frame(message["preview"], metadata, with_metadata=self.preview_metadata)
            await self.send(bytes_data=frame)
        elif "bytes" in message:
            await self.send(bytes_data=message["bytes"])
        else:
            await self.send_message(message["kind"], message["data"])

    async def account_closed(self, message: dict[str, Any]) -> None:
        """The member closed their account (generations/leaving.py): the socket ends now."""
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def generation_events(self, message: dict[str, Any]) -> None:
        """Several of the user's events in one channel message (generations/publisher.py)."""
        for event in message["events"]:
            await self.generation_event({"type": "generation.event", "event": event})

    async def generation_event(self, message: dict[str, Any]) -> None:
        if not await self.still_allowed():
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        event = message["event"]
        kind = event.get("type", "")
        queue_changes = ("queued", "preempted", "canceled", "succeeded", "failed")
        if kind in {f"generation.{change}" for change in queue_changes}:
            await self.send_status()
        if kind not in (
            "generation.started",
            "generation.succeeded",
            "generation.failed",
            "generation.canceled",
        ):
            return
        prompt_id = str(event.get("id"))
        row = await workflow_of(self.scope["user"], prompt_id)
        if row is None or row["workflow"].get("client_id") != self.client_id:
            return
        workflow = row["workflow"]
        if kind == "generation.started":
            await self.send_message("execution_start", {"prompt_id": prompt_id, "timestamp": now_ms()})
            return
        failure = workflow.get("error", {})
        if kind == "generation.succeeded":
            await self.send_message("execution_success", {"prompt_id": prompt_id, "timestamp": now_ms()})
        elif kind == "generation.canceled":
            interrupted = {k: failure.get(k) for k in ("node_id", "node_type")}
            executed = failure.get("executed", [])
            await self.send_message(
                "execution_interrupted", {"prompt_id": prompt_id, **interrupted, "executed": executed}
            )
        else:
            await self.send_message(
                "execution_error",
                {
                    "prompt_id": prompt_id,
                    "node_id": failure.get("node_id"),
                    "node_type": failure.get("node_type"),
                    "executed": failure.get("executed", []),
                    "exception_message": failure.get("exception_message") or row["error_message"],
                    "exception_type": failure.get("exception_type") or row["error_code"],
                    "traceback": failure.get("traceback", []),
                    "current_inputs": {},
                    "current_outputs": {},
                },
            )
        await self.send_message("executing", {"node": None, "display_node": None, "prompt_id": prompt_id})

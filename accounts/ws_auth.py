"""WebSocket authentication and origin checks."""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar
from urllib.parse import urlparse

from channels.consumer import AsyncConsumer, get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import validate_host

from accounts.authentication import bearer_owner, bearer_token
from accounts.models import User
from core.errors import error_body

CLOSE_INSUFFICIENT_SCOPE = 4403


def header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class ApiKeyMiddleware(BaseMiddleware):
    """A Bearer API key or OAuth access token wins over the session cookie; a bad one means
    anonymous, not the session. Its scopes go in ``scope["scopes"]`` (a session has none there:
    it is not scoped)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        raw = header(scope, b"authorization")
        if raw is not None:
            token = bearer_token(raw)
            owner = await database_sync_to_async(bearer_owner)(token) if token else None
            user, scopes = owner if owner else (AnonymousUser(), frozenset[str]())
            # the key is kept: an open socket checks now and then that it still works
            scope = dict(scope, user=user, api_key=token if owner else None, scopes=scopes)
        return await super().__call__(scope, receive, send)


def granted(scope: dict[str, Any], needed: str) -> bool:
    """Whether the socket's key or token has the scope ``needed`` (a session always has)."""
    scopes = scope.get("scopes")
    return scopes is None or needed in scopes


async def refuse_for_scope(consumer: AsyncWebsocketConsumer, needed: str) -> None:
    """Accept only to say why, then close with 4403: the socket's key or token lacks ``needed``."""
    await consumer.accept()
    message = f"This key or access token lacks the scope this socket needs: {needed}."
    body = {"type": "error", **error_body("insufficient_scope", message, {"required_scopes": [needed]})}
    await consumer.send(text_data=json.dumps(body))
    await consumer.close(code=CLOSE_INSUFFICIENT_SCOPE)


class OriginMiddleware(BaseMiddleware):
    """Browsers always send Origin, so a cross-site page cannot ride the session cookie.

    Clients with no Origin (scripts, SDKs) are let through; they authenticate with a key.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        origin = header(scope, b"origin")
        if origin is not None:
            host = urlparse(origin).hostname or ""
            if origin == "null" or not validate_host(host, settings.ALLOWED_HOSTS):
                await send({"type": "websocket.close", "code": 4403})
                return None
        return await super().__call__(scope, receive, send)


def still_authorized(scope: dict[str, Any]) -> bool:
    """Whether the socket's key or token (or, without one, its user) still grants access: a key or
    an app's access revoked, or a user deactivated, since the socket opened ends it."""
    token = scope.get("api_key")
    if token:
        return bearer_owner(token) is not None
    user = scope.get("user")
    return user is not None and User.objects.filter(pk=user.pk, is_active=True).exists()


class RecheckedAccess:
    """For a consumer: whether its socket's access still holds, asked again at most every
    ATELIER_WS_RECHECK_SECONDS (call ``still_allowed`` before sending or answering)."""

    scope: dict[str, Any]
    checked_at = 0.0

    async def still_allowed(self) -> bool:
        if time.monotonic() - self.checked_at < settings.ATELIER_WS_RECHECK_SECONDS:
            return True
        self.checked_at = time.monotonic()
        return bool(await database_sync_to_async(still_authorized)(self.scope))


class DatabaseFreePushes(AsyncConsumer):
    """Channels closes stale database connections before every message a consumer handles: one
    trip to a worker thread each. The handlers named in ``pushed`` touch the database only
    through ``database_sync_to_async`` (``still_allowed``'s recheck, their own queries), which
    closes stale connections itself, so their messages skip that trip: a generation's events are the hot path
    of every socket."""

    pushed: ClassVar[frozenset[str]] = frozenset()

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] in self.pushed:
            await getattr(self, get_handler_name(message))(message)
            return
        await super().dispatch(message)

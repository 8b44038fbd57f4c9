"""WebSocket authentication and origin checks."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlparse

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import validate_host

from accounts.authentication import bearer_token
from accounts.models import User
from accounts.services import api_key_user


def header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class ApiKeyMiddleware(BaseMiddleware):
    """A Bearer API key wins over the session cookie; a bad key means anonymous, not the session."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        raw = header(scope, b"authorization")
        if raw is not None:
            token = bearer_token(raw)
            user = await database_sync_to_async(api_key_user)(token) if token else None
            # the key is kept: an open socket checks now and then that it still works
            scope = dict(scope, user=user or AnonymousUser(), api_key=token if user else None)
        return await super().__call__(scope, receive, send)


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
    """Whether the socket's key (or, without one, its user) still grants access: a key revoked or
    a user deactivated since the socket opened ends it."""
    token = scope.get("api_key")
    if token:
        return api_key_user(token) is not None
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

"""The event socket and ComfyUI's socket need the ``read`` scope from a key or an app's token: one
without it is told so (``insufficient_scope``) and closed with 4403; one with it is served. An app
whose access the member revoked is closed like a revoked key. The real ASGI application, in-process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.models import User
from accounts.oauth import app_access_revoke
from accounts.services import api_key_create
from tests.browser_support import off_the_browser_loop
from tests.oauth_support import app_token
from tests.test_websocket_revocation import push

SOCKETS = ["/ws/v1/events/", "/ws"]


def socket_for(path: str, token: str) -> WebsocketCommunicator:
    from config.asgi import application

    return WebsocketCommunicator(application, path, headers=[(b"authorization", f"Bearer {token}".encode())])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", SOCKETS)
def test_a_key_without_read_is_told_and_closed(path: str) -> None:
    user = User.objects.create_user("writer")
    _, key = api_key_create(user=user, scopes={"generate", "gallery:write"})

    async def scenario() -> None:
        socket = socket_for(path, key)
        assert (await socket.connect())[0]
        refusal = json.loads((await socket.receive_output(timeout=5))["text"])
        assert refusal["error"]["code"] == "insufficient_scope"
        assert refusal["error"]["details"] == {"required_scopes": ["read"]}
        assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}

    off_the_browser_loop(asyncio.run, scenario())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", SOCKETS)
def test_an_app_token_with_read_is_served_until_the_member_revokes_the_app(path: str, settings: Any) -> None:
    settings.ATELIER_WS_RECHECK_SECONDS = 0
    user = User.objects.create_user("watcher")
    token = app_token(user, "read")

    async def scenario() -> None:
        socket = socket_for(path, token)
        assert (await socket.connect())[0]
        first = await socket.receive_output(timeout=5)
        assert "insufficient_scope" not in first.get("text", "")
        await database_sync_to_async(app_access_revoke)(user=user, application_id=await first_app_id(user))
        await push(user.pk)  # a socket checks its access again before it sends
        closing = await socket.receive_output(timeout=5)
        while closing["type"] != "websocket.close":
            closing = await socket.receive_output(timeout=5)
        assert closing["code"] == 4401

    off_the_browser_loop(asyncio.run, scenario())


@database_sync_to_async
def first_app_id(user: User) -> int:
    from oauth2_provider.models import AccessToken

    token = AccessToken.objects.filter(user=user).first()
    assert token is not None and token.application_id is not None
    return int(token.application_id)

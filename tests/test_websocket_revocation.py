"""An open event socket stops when its key is revoked or its user deactivated (issue 17, Low 12).
The real ASGI application (origin check, session and key middleware, the consumer) in-process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from accounts.models import User
from accounts.services import api_key_create, api_key_revoke
from generations.events import channel_message, user_group
from tests.browser_support import off_the_browser_loop


async def opened(key: str) -> WebsocketCommunicator:
    from config.asgi import application

    headers = [(b"authorization", f"Bearer {key}".encode())]
    socket = WebsocketCommunicator(application, "/ws/v1/events/", headers=headers)
    connected, _ = await socket.connect()
    assert connected
    assert (await socket.receive_json_from())["type"] == "snapshot"
    return socket


async def push(user_id: int) -> None:
    event = {"type": "generation.progress", "id": "g-1", "step": 1}
    layer: Any = get_channel_layer()
    await layer.group_send(user_group(user_id), channel_message(event))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["revoke the key", "deactivate the user"])
def test_an_open_socket_closes_once_its_access_ends(how: str, settings: Any) -> None:
    settings.ATELIER_WS_RECHECK_SECONDS = 0
    user = User.objects.create_user(f"socket_{how.split()[0]}")
    api_key, key = api_key_create(user=user)

    async def scenario() -> None:
        socket = await opened(key)
        await push(user.pk)
        assert (await socket.receive_json_from(timeout=5))["step"] == 1  # still allowed: delivered
        if how == "revoke the key":
            await database_sync_to_async(api_key_revoke)(user=user, key_id=api_key.pk)
        else:
            await database_sync_to_async(User.objects.filter(pk=user.pk).update)(is_active=False)
        await push(user.pk)
        closed = await socket.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 4401}
        await socket.wait()

    off_the_browser_loop(asyncio.run, scenario())


@pytest.mark.django_db(transaction=True)
def test_a_session_socket_closes_once_its_user_is_deactivated(settings: Any) -> None:
    from django.test import Client

    from config.asgi import application

    settings.ATELIER_WS_RECHECK_SECONDS = 0
    user = User.objects.create_user("session_socket")
    browser = Client()
    browser.force_login(user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()

    async def scenario() -> None:
        socket = WebsocketCommunicator(application, "/ws/v1/events/", headers=[(b"cookie", cookie)])
        assert (await socket.connect())[0]
        assert (await socket.receive_json_from())["type"] == "snapshot"
        await database_sync_to_async(User.objects.filter(pk=user.pk).update)(is_active=False)
        await push(user.pk)
        assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
        await socket.wait()

    off_the_browser_loop(asyncio.run, scenario())


@pytest.mark.django_db(transaction=True)
def test_a_comfyui_socket_closes_once_its_key_is_revoked(settings: Any) -> None:
    from config.asgi import application

    settings.ATELIER_WS_RECHECK_SECONDS = 0
    user = User.objects.create_user("comfy_socket")
    api_key, key = api_key_create(user=user)

    async def scenario() -> None:
        headers = [(b"authorization", f"Bearer {key}".encode())]
        socket = WebsocketCommunicator(application, "/ws?clientId=c1", headers=headers)
        assert (await socket.connect())[0]
        assert (await socket.receive_json_from())["type"] == "status"
        await database_sync_to_async(api_key_revoke)(user=user, key_id=api_key.pk)
        await push(user.pk)
        assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
        await socket.wait()

    off_the_browser_loop(asyncio.run, scenario())

"""Who may listen on /ws/v1/events/: a session cookie or an API key, from an allowed origin."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import ApiUser, Servers

pytestmark = pytest.mark.live


def test_a_browser_session_cookie_opens_the_event_stream(servers: Servers, alice: ApiUser) -> None:
    client = Client()
    client.force_login(alice.user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    origin = servers.url
    with connect(servers.ws_url, additional_headers={"Cookie": cookie, "Origin": origin}) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer atl_nope.nope"}, {"Authorization": "Basic x"}]
)
def test_anonymous_or_bad_key_clients_are_refused(servers: Servers, headers: dict[str, str]) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(servers.ws_url, additional_headers=headers)
    assert refused.value.response.status_code == 403


def test_a_foreign_origin_is_refused_even_with_a_valid_session(servers: Servers, alice: ApiUser) -> None:
    client = Client()
    client.force_login(alice.user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    with pytest.raises(InvalidStatus):
        connect(servers.ws_url, additional_headers={"Cookie": cookie, "Origin": "https://evil.example"})


def test_unknown_messages_get_an_error_reply(alice: ApiUser) -> None:
    with alice.events() as events:
        events.next()
        events.ws.send(json.dumps({"type": "launch.rockets"}))
        assert events.next()["error"]["code"] == "malformed_request"
        events.ws.send("not json")
        assert events.next()["error"]["code"] == "malformed_request"

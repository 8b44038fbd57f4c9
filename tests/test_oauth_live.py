"""A third-party app acting for a member through OAuth 2 against a live Atelier (web and worker
processes): authlib's client runs the authorization-code flow with PKCE, the member consents
through the real pages, and the app's token is held to the scopes the member granted on the API
and the events socket; revoked, it is refused; the ID token of OpenID Connect checks out against
the published keys."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet
from oauth2_provider.models import AccessToken, Grant
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from accounts.models import User
from billing.credits import account_for
from generations.models import Generation, Image
from tests.conftest import Servers, make_user
from tests.oauth_support import REDIRECT_URI, App, consent, query_of, register_app, signed_in

pytestmark = pytest.mark.live

SMALL = {"prompt": "a red circle on a blue background", "width": 64, "height": 64, "steps": 3}


@pytest.fixture
def member(servers: Servers, transactional_db: None) -> User:
    return make_user("mira")


@pytest.fixture
def app(servers: Servers, transactional_db: None) -> App:
    return register_app(servers.url)


def authorized(app: App, member: User, scope: str) -> tuple[Any, dict[str, Any]]:
    """authlib's client for ``app`` and the token it got once ``member`` consented to ``scope``."""
    client = app.client(scope)
    url, verifier = app.authorize_url(client)
    back = consent(signed_in(app.base_url, member), url)
    assert back.startswith(REDIRECT_URI + "?") and "code" in query_of(back)
    return client, app.token(client, back, verifier)


def refresh(servers: Servers, app: App, refresh_token: str) -> requests.Response:
    """A plain refresh-token request, as a client that kept an old token would send it."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    credentials = {"client_id": app.client_id, "client_secret": app.client_secret}
    return requests.post(servers.url + "/o/token/", data={**data, **credentials}, timeout=30)


def finished(client: Any, url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(url, timeout=30).json()
        if body["status"] in ("succeeded", "failed", "canceled"):
            return body
        time.sleep(0.2)
    raise TimeoutError(url)


def test_an_app_generates_for_the_member_and_is_refused_outside_its_scopes(
    servers: Servers, app: App, member: User
) -> None:
    client, token = authorized(app, member, "generate read")
    assert set(token["scope"].split()) == {"generate", "read"} and token["refresh_token"]
    balance = account_for(member).balance

    created = client.post(servers.url + "/api/v1/generations", json=SMALL, timeout=60)
    assert created.status_code == 202, created.text
    assert created.headers["RateLimit-Limit"]  # counted as a key's calls are
    done = finished(client, servers.url + created.headers["Location"])
    assert done["status"] == "succeeded", done
    assert Generation.objects.get(pk=done["id"]).user == member
    assert account_for(member).balance < balance  # paid with the member's credits

    image_id = done["images"][0]["id"]
    refused = client.post(f"{servers.url}/api/v1/images/{image_id}/publish", timeout=30)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_scope"
    assert refused.json()["error"]["details"] == {"required_scopes": ["gallery:write"]}
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    assert not Image.objects.get(pk=image_id).is_public
    billing = client.get(servers.url + "/api/v1/billing", timeout=30)
    assert billing.status_code == 403 and billing.json()["error"]["code"] == "insufficient_scope"


def test_a_revoked_token_is_refused_and_cannot_be_refreshed(servers: Servers, app: App, member: User) -> None:
    client, token = authorized(app, member, "read billing:read")
    assert client.get(servers.url + "/api/v1/billing", timeout=30).json()["balance"]

    revoked = client.revoke_token(
        servers.url + "/o/revoke_token/", token=token["access_token"], token_type_hint="access_token"
    )
    assert revoked.status_code == 200
    after = requests.get(
        servers.url + "/api/v1/generations",
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=30,
    )
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "authentication_failed"
    refreshed = refresh(servers, app, token["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"


def test_the_events_socket_takes_a_read_token_and_refuses_one_without(
    servers: Servers, app: App, member: User
) -> None:
    _, reader = authorized(app, member, "read")
    headers = {"Authorization": f"Bearer {reader['access_token']}"}
    with connect(servers.ws_url, additional_headers=headers) as socket:
        assert json.loads(socket.recv(timeout=30))["type"] == "snapshot"

    _, writer = authorized(app, member, "generate")
    headers = {"Authorization": f"Bearer {writer['access_token']}"}
    with connect(servers.ws_url, additional_headers=headers) as socket:
        message = json.loads(socket.recv(timeout=30))
        assert message["type"] == "error" and message["error"]["code"] == "insufficient_scope"
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


def test_bad_requests_get_an_error_code_and_leave_nothing_behind(
    servers: Servers, app: App, member: User
) -> None:
    session = signed_in(servers.url, member)
    # No PKCE: the app is sent back with an error code, and no code was made.
    plain = f"{servers.url}/o/authorize/?response_type=code&client_id={app.client_id}&scope=read"
    refused = consent(session, f"{plain}&redirect_uri={REDIRECT_URI}")
    assert query_of(refused)["error"] == "invalid_request"
    assert not Grant.objects.exists()

    # A code redeemed with the wrong verifier is refused, and no token is made.
    client = app.client("read")
    url, _verifier = app.authorize_url(client)
    back = consent(session, url)
    wrong = requests.post(
        servers.url + "/o/token/",
        data={
            "grant_type": "authorization_code",
            "code": query_of(back)["code"],
            "redirect_uri": REDIRECT_URI,
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "code_verifier": "x" * 64,
        },
        timeout=30,
    )
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # An unknown scope, and the member saying no, send the app back with an error code.
    unknown = consent(session, app.authorize_url(app.client("read make:money"))[0])
    assert query_of(unknown)["error"] == "invalid_scope"
    denied = consent(session, app.authorize_url(app.client("read"))[0], allow=False)
    assert query_of(denied)["error"] == "access_denied"
    assert not AccessToken.objects.exists()


def test_openid_connect_signs_an_id_token_with_the_published_key(
    servers: Servers, app: App, member: User
) -> None:
    discovery = requests.get(servers.url + "/o/.well-known/openid-configuration", timeout=30).json()
    assert discovery["authorization_endpoint"] == servers.url + "/o/authorize/"
    assert "S256" in discovery["code_challenge_methods_supported"]
    _, token = authorized(app, member, "openid profile read")
    keys = KeySet.import_key_set(requests.get(discovery["jwks_uri"], timeout=30).json())
    claims = jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims
    jwt.JWTClaimsRegistry(exp={"essential": True}).validate(claims)
    assert claims["sub"] == str(member.pk) and claims["aud"] == app.client_id
    assert claims["preferred_username"] == "mira"
    info = requests.get(
        discovery["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=30,
    )
    assert info.json()["preferred_username"] == "mira"


def test_a_refreshed_token_works_and_a_replayed_refresh_token_ends_the_grant(
    servers: Servers, app: App, member: User
) -> None:
    client, first = authorized(app, member, "read")
    second = client.refresh_token(servers.url + "/o/token/", refresh_token=first["refresh_token"])
    assert second["access_token"] != first["access_token"] and second["scope"] == "read"
    assert client.get(servers.url + "/api/v1/generations", timeout=30).status_code == 200

    # Someone replays the first refresh token (stolen?): refused, and the grant's live tokens end.
    replayed = refresh(servers, app, first["refresh_token"])
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"
    headers = {"Authorization": f"Bearer {second['access_token']}"}
    assert requests.get(servers.url + "/api/v1/generations", headers=headers, timeout=30).status_code == 401

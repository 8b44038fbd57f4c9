"""Scopes at the API edge (api/scopes.py): every API route needs one, a key or a third-party
app's access token outside it gets ``403 insufficient_scope`` before any work is done, API keys
have every scope unless chosen otherwise (keys from before scopes too), and a member sees and
revokes the apps acting for them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from oauth2_provider.models import Application, RefreshToken

from accounts.models import ApiKey, User
from accounts.scopes import ALL_SCOPES, SCOPES
from accounts.services import api_key_create
from api.scopes import ROUTE_SCOPES, needed_scopes
from billing.credits import account_for
from generations.models import Generation
from tests.oauth_support import app_token
from tests.test_route_authorization import ALL_ROUTES, ROUTES, Route, owned, path_of

__all__ = ["owned"]

pytestmark = pytest.mark.django_db
WEBHOOK_ROUTES = {"api_webhooks", "api_webhook_detail", "api_webhook_test", "api_webhook_deliveries"}


def bearer(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def keyed(user: User, scopes: set[str] | frozenset[str]) -> Client:
    return bearer(api_key_create(user=user, scopes=scopes)[1])


def test_every_api_route_names_the_scope_it_needs() -> None:
    unnamed = {route.name for route in ALL_ROUTES} - set(ROUTE_SCOPES) - WEBHOOK_ROUTES
    assert not unnamed, f"add these routes to api/scopes.py ROUTE_SCOPES: {sorted(unnamed)}"
    for name in WEBHOOK_ROUTES:  # they send a member's events anywhere: every scope or nothing
        assert needed_scopes(name, "GET") == ALL_SCOPES


def scoped_cases() -> list[tuple[Route, str]]:
    return [
        (route, method)
        for route in ALL_ROUTES
        for method in ROUTES[route.name].methods
        if needed_scopes(route.name, method.upper())
    ]


@pytest.mark.parametrize(("route", "method"), scoped_cases(), ids=str)
def test_a_key_without_the_routes_scope_is_refused_and_one_with_it_is_let_through(
    route: Route, method: str, owned: dict[str, str]
) -> None:
    user = User.objects.get(username="owner")
    needed = needed_scopes(route.name, method.upper())
    path = path_of(route, owned)
    given = ALL_SCOPES - needed or ALL_SCOPES - {"billing:read"}  # every scope but one needed
    refused = keyed(user, given).generic(method.upper(), path, "{}", content_type="application/json")
    assert refused.status_code == 403, refused.content[:300]
    assert refused.json()["error"]["code"] == "insufficient_scope"
    assert refused.json()["error"]["details"]["required_scopes"] == sorted(needed - given)
    assert refused["RateLimit-Limit"]  # counted like any other call
    if len(needed) == 1:
        let_through = keyed(user, needed).generic(method.upper(), path, "{}", content_type="application/json")
        assert b"insufficient_scope" not in let_through.content, let_through.content[:300]


def test_a_refused_submission_stores_and_charges_nothing() -> None:
    user = User.objects.create_user("reader", password="x")
    balance = account_for(user).balance
    response = keyed(user, {"read"}).post(
        "/api/v1/generations", {"prompt": "a red circle"}, content_type="application/json"
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"
    assert not Generation.objects.filter(user=user).exists()
    assert account_for(user).balance == balance


def test_keys_have_every_scope_unless_chosen_and_the_page_lets_a_member_choose(client: Client) -> None:
    user = User.objects.create_user("keeper", password="x")
    key, raw = api_key_create(user=user)
    assert set(key.scopes.split()) == ALL_SCOPES
    assert bearer(raw).get("/api/v1/billing").status_code == 200
    client.force_login(user)
    page = client.post(
        "/accounts/api-keys/",
        {"name": "gallery bot", "scopes": ["read", "gallery:write"], "scopes_offered": "1"},
    )
    assert page.status_code == 200 and "read gallery:write" in page.content.decode()
    assert user.api_keys.get(name="gallery bot").scopes == "read gallery:write"
    for bad in ([], ["read", "admin:everything"]):
        page = client.post(
            "/accounts/api-keys/", {"name": "bad", "scopes": bad, "scopes_offered": "1"}, follow=True
        )
        assert "Choose at least one of the scopes" in page.content.decode()
    assert not user.api_keys.filter(name="bad").exists()


@pytest.mark.django_db(transaction=True)
def test_keys_made_before_scopes_existed_keep_every_scope() -> None:
    executor = MigrationExecutor(connection)
    before, after = [("accounts", "0002_email_addresses")], [("accounts", "0003_api_key_scopes")]
    executor.migrate(before)
    try:
        old_apps = executor.loader.project_state(before).apps
        user = old_apps.get_model("accounts", "User").objects.create(username="veteran", password="x")
        old_key = old_apps.get_model("accounts", "ApiKey")
        old_key.objects.create(user=user, prefix="atl_old", secret_hash="0" * 64)
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(after)
        assert set(ApiKey.objects.get(prefix="atl_old").scopes.split()) == ALL_SCOPES
    finally:  # every later migration too: the tests after this one need the whole schema
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_an_app_token_acts_within_its_scopes_and_not_once_expired() -> None:
    user = User.objects.create_user("mira", password="x")
    token = app_token(user, "read")
    listed = bearer(token).get("/api/v1/generations")
    assert listed.status_code == 200 and listed["RateLimit-Limit"]
    refused = bearer(token).post("/api/v1/generations", {"prompt": "x"}, content_type="application/json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope"
    assert bearer(token).get("/api/v1/webhooks").json()["error"]["code"] == "insufficient_scope"
    expired = bearer(app_token(user, "read", expires_in=-1)).get("/api/v1/generations")
    assert expired.status_code == 401
    assert expired.json()["error"] == {
        "code": "authentication_failed",
        "message": "The access token is invalid, expired or revoked.",
        "details": {},
    }


def test_a_session_is_not_scoped(client: Client) -> None:
    user = User.objects.create_user("browser", password="x")
    client.force_login(user)
    assert client.get("/api/v1/billing").status_code == 200
    assert client.get("/api/v1/webhooks").status_code == 200


def test_a_member_sees_their_authorized_apps_and_revokes_one(client: Client) -> None:
    mira, other = (
        User.objects.create_user("mira", password="x"),
        User.objects.create_user("otto", password="x"),
    )
    token = app_token(mira, "read billing:read")
    app_token(mira, "generate", name="Sketchbook")
    app_token(other, "read", name="Otto's tool")
    client.force_login(mira)
    page = client.get("/accounts/apps/").content.decode()
    assert "Pixel Pal" in page and "Sketchbook" in page and "Otto&#x27;s tool" not in page
    assert SCOPES["billing:read"] in page and SCOPES["read"] in page

    app = Application.objects.get(name="Pixel Pal")
    outsider = Client()
    outsider.force_login(other)
    for bad in ({"application": app.pk}, {"application": "x"}, {}):
        answer = outsider.post("/accounts/apps/", bad, follow=True).content.decode()
        assert "That app has no access to revoke." in answer
    assert bearer(token).get("/api/v1/billing").status_code == 200  # not theirs to revoke

    done = client.post("/accounts/apps/", {"application": app.pk}, follow=True).content.decode()
    assert "can no longer act for you" in done and "Pixel Pal" not in done.split("<table", 1)[1]
    assert bearer(token).get("/api/v1/billing").status_code == 401
    assert not RefreshToken.objects.filter(user=mira, application=app, revoked__isnull=True).exists()
    assert "Sketchbook" in done


def test_the_consent_page_needs_a_signed_in_member() -> None:
    response = Client().get("/o/authorize/?response_type=code&client_id=x")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")

"""The API edge (api/): its middleware run in the order api/middleware.py writes down, and a
Bearer key is looked up once per request, whoever needs it."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from accounts import services as accounts_services
from accounts.models import User
from accounts.services import api_key_create
from api import authentication
from api.middleware import API_MIDDLEWARE

pytestmark = pytest.mark.django_db


def test_the_edge_runs_in_its_written_order_after_djangos_authentication() -> None:
    middleware = list(settings.MIDDLEWARE)
    start = middleware.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1
    assert middleware[start : start + len(API_MIDDLEWARE)] == API_MIDDLEWARE
    assert API_MIDDLEWARE == [
        "api.authentication.BearerKeyMiddleware",
        "api.ratelimit.RateLimitMiddleware",
        "api.versioning.ApiVersionMiddleware",
        "api.scopes.ScopeMiddleware",
        "api.idempotency.IdempotencyMiddleware",
    ]
    assert middleware.index("django.contrib.sessions.middleware.SessionMiddleware") < start


def test_drf_is_wired_to_the_edge() -> None:
    framework: dict[str, Any] = settings.REST_FRAMEWORK
    assert framework["DEFAULT_AUTHENTICATION_CLASSES"][0] == "api.authentication.ApiKeyAuthentication"
    assert framework["EXCEPTION_HANDLER"] == "api.exceptions.api_exception_handler"
    assert framework["DEFAULT_PAGINATION_CLASS"] == "api.pagination.CursorPage"


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every API-key lookup of the edge, by raw key."""
    seen: list[str] = []
    real = accounts_services.api_key_owner

    def counting(raw_key: str, **kwargs: Any) -> Any:
        seen.append(raw_key)
        return real(raw_key, **kwargs)

    monkeypatch.setattr(authentication, "api_key_owner", counting)
    return seen


@pytest.fixture
def key(client: Client) -> str:
    user = User.objects.create_user("edge", password="x")
    _, raw = api_key_create(user=user)
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {raw}"
    return raw


def test_a_key_is_looked_up_once_for_rate_limit_idempotency_and_drf(
    client: Client, key: str, lookups: list[str]
) -> None:
    body = {"prompt": "a cat", "width": 64, "height": 64, "steps": 1}
    response = client.post(
        "/api/v1/generations/quote", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert response.status_code == 200, response.content
    assert response["RateLimit-Limit"] and response["API-Version"] == settings.ATELIER_API_VERSION
    assert lookups == [key]


def test_a_replayed_response_is_counted_and_versioned(client: Client, key: str) -> None:
    body = {"prompt": "a cat", "width": 64, "height": 64, "steps": 1}
    first, again = (
        client.post(
            "/api/v1/generations/quote", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-2"
        )
        for _ in range(2)
    )
    assert again["Idempotent-Replayed"] == "true" and again.content == first.content
    assert int(again["RateLimit-Remaining"]) == int(first["RateLimit-Remaining"]) - 1
    assert again["API-Version"] == settings.ATELIER_API_VERSION


def test_the_openai_surface_reads_the_edges_lookup(client: Client, key: str, lookups: list[str]) -> None:
    response = client.get("/v1/models")
    assert response.status_code == 200 and response.json()["object"] == "list"
    assert lookups == [key]


def test_an_unknown_key_is_401_and_counted_by_address(client: Client) -> None:
    response = client.get("/api/v1/generations", HTTP_AUTHORIZATION="Bearer nope.nope")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert int(response["RateLimit-Limit"]) == settings.ATELIER_ANON_RATE_PER_MINUTE

"""Rate limits per API key, per user and per client IP, counted in Redis."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from accounts.services import api_key_create
from billing.credits import account_for
from billing.models import Plan

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def tight_limits(settings: Any) -> None:
    settings.ATELIER_DEFAULT_PLAN = "free"
    settings.ATELIER_ANON_RATE_PER_MINUTE = 3
    Plan.objects.filter(slug="free").update(api_rate_per_minute=3)


@dataclass
class Clock:
    """The limiter's clock (billing/ratelimit.py reads time.time() once per request)."""

    now: float

    def time(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Every test here starts at the middle of a minute, so that no run of a few requests
    crosses a window by chance; the boundary has a test of its own."""
    pinned = Clock(now=(time.time() // 60) * 60 + 30)
    monkeypatch.setattr("billing.ratelimit.time", pinned)
    return pinned


def keyed_client(user: User) -> Client:
    _, key = api_key_create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def unique_user() -> User:
    user = User.objects.create_user(f"rl-{uuid.uuid4().hex[:8]}")
    account_for(user)
    return user


def test_every_api_response_carries_the_headers_and_the_limit_answers_429() -> None:
    api = keyed_client(unique_user())
    remaining = []
    for _ in range(3):
        response = api.get("/api/v1/models")
        assert response.status_code == 200
        assert response["RateLimit-Limit"] == "3"
        assert 0 < int(response["RateLimit-Reset"]) <= 60
        remaining.append(int(response["RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    refused = api.get("/api/v1/models")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused["Retry-After"]) <= 60


def test_a_second_key_does_not_escape_the_users_limit() -> None:
    user = unique_user()
    first, second = keyed_client(user), keyed_client(user)
    for _ in range(3):
        first.get("/api/v1/models")
    assert second.get("/api/v1/models").status_code == 429


def test_the_limit_follows_the_plan() -> None:
    user = unique_user()
    Plan.objects.filter(slug="basic").update(api_rate_per_minute=5)
    account_for(user).__class__.objects.filter(user=user).update(plan=Plan.objects.get(slug="basic"))
    response = keyed_client(user).get("/api/v1/models")
    assert response["RateLimit-Limit"] == "5"


def test_rotating_x_forwarded_for_does_not_reset_an_anonymous_limit() -> None:
    client = Client(REMOTE_ADDR="203.0.113.7")
    statuses = [
        client.get("/api/v1/models", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code for i in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]


def test_behind_a_trusted_proxy_the_client_address_comes_from_its_entry(settings: Any) -> None:
    settings.ATELIER_TRUSTED_PROXIES = 1
    proxy = "10.0.0.2"

    def status(forwarded: str) -> int:
        client = Client(REMOTE_ADDR=proxy)
        return int(client.get("/api/v1/models", HTTP_X_FORWARDED_FOR=forwarded).status_code)

    # The client prepends fake entries; the proxy appends the real address, which is what counts.
    assert [status(f"1.1.1.{i}, 192.0.2.50") for i in range(4)] == [401, 401, 401, 429]
    assert status("192.0.2.51") == 401


def test_polling_comfyui_state_does_not_use_up_the_plans_rate(settings: Any) -> None:
    settings.ATELIER_COMFY_READ_RATE_PER_MINUTE = 20
    api = keyed_client(unique_user())
    for path in ["/history", "/api/history/x", "/queue", "/prompt", "/object_info/KSampler"] * 3:
        response = api.get(path)
        assert response.status_code == 200, path
        assert response["RateLimit-Limit"] == "20"
    assert int(api.get("/queue")["RateLimit-Remaining"]) == 20 - 16
    # The plan's rate (3) is untouched by the 16 reads: writes and the REST API still have it all.
    assert api.post("/interrupt", {}, content_type="application/json").status_code == 200
    assert api.get("/api/v1/models")["RateLimit-Remaining"] == "1"


def test_comfyui_reads_have_a_limit_of_their_own(settings: Any) -> None:
    settings.ATELIER_COMFY_READ_RATE_PER_MINUTE = 4
    user = unique_user()
    first, second = keyed_client(user), keyed_client(user)
    for _ in range(4):
        assert first.get("/history").status_code == 200
    refused = second.get("/queue")  # per user, whichever key
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0


def test_anonymous_comfyui_reads_count_against_the_address() -> None:
    anonymous = Client()
    for _ in range(3):
        assert anonymous.get("/history").status_code == 401
    assert anonymous.get("/history").status_code == 429


def test_at_a_minute_boundary_the_window_resets_when_retry_after_says(clock: Clock) -> None:
    api = keyed_client(unique_user())
    clock.now += 29.5  # half a second before the minute turns
    assert [api.get("/api/v1/models").status_code for _ in range(3)] == [200, 200, 200]
    refused = api.get("/api/v1/models")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "1" and refused["RateLimit-Reset"] == "1"
    clock.now += 0.4  # still the old minute: still refused
    assert api.get("/api/v1/models").status_code == 429
    clock.now += 0.6  # the new minute, as Retry-After said: the full limit again, and no more
    fresh = api.get("/api/v1/models")
    assert fresh.status_code == 200
    assert (fresh["RateLimit-Remaining"], fresh["RateLimit-Reset"]) == ("2", "59")
    assert [api.get("/api/v1/models").status_code for _ in range(3)] == [200, 200, 429]

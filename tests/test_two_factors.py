"""Two-factor sign-in with an authenticator app and recovery codes; staff need it for the admin
when ATELIER_STAFF_MFA is on (issue 18, point 3)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from config.account_settings import cache_in_redis
from scripts.private_redis import free_port
from tests.totp_support import totp_code

pytestmark = pytest.mark.django_db

PASSWORD = "a long enough passphrase 42"


def signed_in(username: str) -> Client:
    client = Client()
    assert client.post("/accounts/login/", {"login": username, "password": PASSWORD}).status_code == 302
    return client


def activate_authenticator_app(client: Client) -> tuple[str, list[str]]:
    """Set up the app as a member does: read the secret off the page, answer with a code, and
    note the recovery codes shown next. The secret and the codes, for later sign-ins."""
    asked = client.get("/accounts/2fa/totp/activate/")
    assert asked["Location"].startswith("/accounts/reauthenticate/")  # first, the password again
    assert (
        client.post(asked["Location"], {"password": PASSWORD})["Location"] == "/accounts/2fa/totp/activate/"
    )
    page = client.get("/accounts/2fa/totp/activate/").content.decode()
    secret = re.search(r'id="authenticator_secret"[^>]*value="([A-Z2-7]+)"', page, re.S)
    assert secret, "the page shows the secret"
    response = client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret.group(1))})
    assert response["Location"] == "/accounts/2fa/recovery-codes/"
    codes_page = client.get(response["Location"]).content.decode()
    codes = re.search(r'<textarea[^>]*id="recovery_codes"[^>]*>(.*?)</textarea>', codes_page, re.S)
    assert codes, "the recovery codes are shown once the app is set up"
    return secret.group(1), html.unescape(codes.group(1)).split()


def password_step(username: str) -> Client:
    client = Client()
    response = client.post("/accounts/login/", {"login": username, "password": PASSWORD})
    assert response["Location"] == "/accounts/2fa/authenticate/"
    return client


def test_with_an_app_set_up_sign_in_asks_for_its_code(client: Client) -> None:
    User.objects.create_user("ada", "ada@example.com", PASSWORD)
    secret, _ = activate_authenticator_app(signed_in("ada"))

    halfway = password_step("ada")
    assert halfway.get("/create/").status_code == 302  # the password alone signs no one in
    wrong = halfway.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert wrong.status_code == 200 and "Incorrect code." in wrong.content.decode()
    assert halfway.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})["Location"] == "/create/"
    assert halfway.get("/create/").status_code == 200


def test_an_app_code_signs_in_once() -> None:
    User.objects.create_user("al", "al@example.com", PASSWORD)
    secret, _ = activate_authenticator_app(signed_in("al"))
    code = totp_code(secret)
    assert password_step("al").post("/accounts/2fa/authenticate/", {"code": code})["Location"] == "/create/"
    replay = password_step("al").post("/accounts/2fa/authenticate/", {"code": code})
    assert "Incorrect code." in replay.content.decode()


def test_sign_in_with_an_app_works_while_redis_is_away(settings: Any) -> None:
    """allauth's counters and spent codes live in Redis (core/cache.py); an outage lets people in."""
    settings.CACHES = {"default": cache_in_redis(f"redis://127.0.0.1:{free_port()}/0")}
    User.objects.create_user("aly", "aly@example.com", PASSWORD)
    secret, _ = activate_authenticator_app(signed_in("aly"))
    assert (
        password_step("aly").post("/accounts/2fa/authenticate/", {"code": totp_code(secret)}).status_code
        == 302
    )


def test_a_recovery_code_signs_in_once() -> None:
    User.objects.create_user("bo", "bo@example.com", PASSWORD)
    _, codes = activate_authenticator_app(signed_in("bo"))
    assert len(codes) == 10

    first = password_step("bo")
    assert first.post("/accounts/2fa/authenticate/", {"code": codes[0]})["Location"] == "/create/"
    again = password_step("bo")
    assert "Incorrect code." in again.post("/accounts/2fa/authenticate/", {"code": codes[0]}).content.decode()
    assert again.get("/create/").status_code == 302


def test_guesses_at_the_code_are_limited_per_account() -> None:
    User.objects.create_user("cy", "cy@example.com", PASSWORD)
    secret, _ = activate_authenticator_app(signed_in("cy"))
    guessing = password_step("cy")
    for guess in range(5):
        guessing.post("/accounts/2fa/authenticate/", {"code": f"{guess:06d}"})
    refused = guessing.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert "Too many failed login attempts." in refused.content.decode()
    assert guessing.get("/create/").status_code == 302


@pytest.fixture
def staff_mfa(settings: Any) -> None:
    settings.ATELIER_STAFF_MFA = True


def test_staff_reach_the_admin_only_after_setting_up_an_app(staff_mfa: None) -> None:
    User.objects.create_user("dee", "", PASSWORD, is_staff=True, is_superuser=True)  # no address at all
    client = signed_in("dee")
    response = client.get("/admin/accounts/user/")
    assert response["Location"] == "/accounts/2fa/totp/activate/"
    assert "set up an authenticator app" in client.get(response["Location"], follow=True).content.decode()
    activate_authenticator_app(client)
    assert client.get("/admin/accounts/user/").status_code == 200


def test_the_rule_is_for_staff_only_and_only_when_switched_on(settings: Any) -> None:
    User.objects.create_user("eve", "eve@example.com", PASSWORD, is_staff=True, is_superuser=True)
    assert signed_in("eve").get("/admin/accounts/user/").status_code == 200  # ATELIER_STAFF_MFA off
    settings.ATELIER_STAFF_MFA = True
    User.objects.create_user("fox", "fox@example.com", PASSWORD)
    member = signed_in("fox")
    assert member.get("/create/").status_code == 200
    assert member.get("/admin/")["Location"].startswith("/admin/login/")  # as before: not staff


def test_the_admin_signs_in_through_our_page_with_its_second_factor() -> None:
    anonymous = Client()
    assert anonymous.get("/admin/login/?next=/admin/")["Location"] == "/accounts/login/?next=%2Fadmin%2F"
    response = anonymous.post("/admin/login/?next=/admin/", {"username": "x", "password": "y"})
    assert response["Location"].startswith("/accounts/login/")  # no password-only form of its own

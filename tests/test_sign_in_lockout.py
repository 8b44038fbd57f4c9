"""The sign-in lockout counts the account a login resolves to: tries as "bob", "BOB" and
bob@example.com add up, wherever they come from; logins that name nobody count by themselves."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.test import Client

from accounts.models import User

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def from_address(address: str) -> Client:
    return Client(REMOTE_ADDR=address)


def test_tries_under_any_name_of_one_account_add_up(settings: Any) -> None:
    settings.ATELIER_LOGIN_MAX_FAILURES = 3
    bob = User.objects.create_user("bob", email="bob@example.com", password=PASSWORD)
    EmailAddress.objects.create(user=bob, email="bob.work@example.org", verified=True)
    for address, login in [
        ("203.0.113.1", "bob"),
        ("203.0.113.2", "BOB@example.com"),
        ("203.0.113.3", "bob.work@example.org"),
    ]:
        assert (
            from_address(address).post("/accounts/login/", {"login": login, "password": "guess"}).status_code
            == 200
        )
    locked = from_address("203.0.113.4").post("/accounts/login/", {"login": "Bob", "password": PASSWORD})
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.content.decode()


def test_another_account_and_unknown_logins_are_counted_apart(settings: Any) -> None:
    settings.ATELIER_LOGIN_MAX_FAILURES = 2
    User.objects.create_user("bob", email="bob@example.com", password=PASSWORD)
    User.objects.create_user("bobby", email="bobby@example.com", password=PASSWORD)
    for address, login in [
        ("203.0.113.1", "nobody"),
        ("203.0.113.2", "nobody@example.com"),
        ("203.0.113.3", "bob"),
    ]:
        assert (
            from_address(address).post("/accounts/login/", {"login": login, "password": "guess"}).status_code
            == 200
        )
    signed_in = from_address("203.0.113.9").post("/accounts/login/", {"login": "bobby", "password": PASSWORD})
    assert signed_in.status_code == 302
    still_open = from_address("203.0.113.8").post("/accounts/login/", {"login": "bob", "password": PASSWORD})
    assert still_open.status_code == 302  # one failure of bob's own, under the limit

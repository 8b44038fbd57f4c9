"""Accounts made through a sign-in provider count against the client address's sign-ups of the
hour, like the sign-up form's (ATELIER_SIGNUPS_PER_HOUR): past the limit allauth closes sign-up
to that address instead of making another account with free credits."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.socialaccount.adapter import get_adapter
from django.test import Client, RequestFactory

from accounts.models import User

pytestmark = pytest.mark.django_db

PASSWORD = "a long enough passphrase 42"


def callback_from(address: str) -> Any:
    return RequestFactory().get("/accounts/oidc/sso/login/callback/", REMOTE_ADDR=address)


def test_sign_ups_through_a_provider_share_the_addresss_hourly_limit_with_the_form(settings: Any) -> None:
    settings.ATELIER_SIGNUPS_PER_HOUR = 2
    adapter = get_adapter(callback_from("203.0.113.7"))
    assert adapter.is_open_for_signup(callback_from("203.0.113.7"), None)
    form = {"username": "nell", "email": "nell@example.com", "password1": PASSWORD, "password2": PASSWORD}
    assert Client(REMOTE_ADDR="203.0.113.7").post("/accounts/signup/", form).status_code == 302
    assert not adapter.is_open_for_signup(callback_from("203.0.113.7"), None)  # the hour's two are taken
    assert adapter.is_open_for_signup(callback_from("203.0.113.8"), None)  # another address has its own
    assert User.objects.filter(username="nell").exists()

"""Members from before allauth keep their address (accounts/migrations/0002_email_addresses.py)."""

from __future__ import annotations

from importlib import import_module

import pytest
from allauth.account.models import EmailAddress
from django.apps import apps
from django.test import Client

from accounts.models import User

pytestmark = pytest.mark.django_db

PASSWORD = "a long enough passphrase 42"
migration = import_module("accounts.migrations.0002_email_addresses")


def addresses() -> list[tuple[str, str, bool, bool]]:
    rows = EmailAddress.objects.order_by("user__username").values_list(
        "user__username", "email", "verified", "primary"
    )
    return list(rows)


def test_each_members_email_becomes_their_primary_verified_address() -> None:
    User.objects.create_user("old", "Old@Example.com", PASSWORD)
    User.objects.create_user("twin", "old@example.com", PASSWORD)  # the same address, given again
    User.objects.create_user("silent", "", PASSWORD)
    migration.addresses_from_user_emails(apps, None)
    migration.addresses_from_user_emails(apps, None)  # a second run adds nothing
    assert addresses() == [
        ("old", "old@example.com", True, True),
        ("twin", "old@example.com", False, True),  # only one account may hold it verified
    ]


def test_a_member_from_before_signs_in_by_username_or_by_email(client: Client) -> None:
    User.objects.create_user("old", "old@example.com", PASSWORD)
    migration.addresses_from_user_emails(apps, None)
    assert client.post("/accounts/login/", {"login": "old", "password": PASSWORD}).status_code == 302
    assert (
        Client().post("/accounts/login/", {"login": "old@example.com", "password": PASSWORD}).status_code
        == 302
    )

"""Email addresses and password reset, with the mail going out through a real SMTP server; the
free monthly credits wait for a verified address (issue 18, points 1, 5 and 7)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from allauth.account.models import EmailAddress
from django.test import Client

from accounts.models import User
from billing.credits import account_for
from tests.smtp_support import MailServer, link_in, text_of

pytestmark = pytest.mark.django_db

PASSWORD = "a long enough passphrase 42"
NEW_PASSWORD = "another quite long passphrase 7"


def sign_up(client: Client, name: str, email: str, password2: str = PASSWORD) -> Any:
    fields = {"username": name, "email": email, "password1": PASSWORD, "password2": password2}
    return client.post("/accounts/signup/", fields)


def path_of(link: str) -> str:
    return urlsplit(link).path


@pytest.fixture
def free_credits_need_verification(settings: Any) -> None:
    settings.ATELIER_DEFAULT_PLAN = "free"
    settings.ATELIER_CREDITS_NEED_VERIFIED_EMAIL = True


def test_it_mails_a_verification_link_and_grants_free_credits_once_followed(
    client: Client, mail_through_smtp: MailServer, free_credits_need_verification: None
) -> None:
    assert sign_up(client, "erin", "Erin@Example.com")["Location"] == "/create/"
    user = User.objects.get(username="erin")
    assert account_for(user).balance == 0  # not yet: the address is unverified

    mail = mail_through_smtp.wait_for_mail("erin@example.com")
    assert str(mail["Subject"]).startswith("[Atelier] ") and "Hello from Atelier!" in text_of(mail)
    confirm = path_of(link_in(mail, "/accounts/confirm-email/"))
    assert "Confirm" in client.get(confirm).content.decode()
    assert client.post(confirm).status_code == 302

    assert EmailAddress.objects.get(user=user).verified
    assert account_for(user).balance == 25 * 100  # the free plan's monthly credits


def test_a_link_made_up_or_from_elsewhere_verifies_nothing(
    client: Client, mail_through_smtp: MailServer, free_credits_need_verification: None
) -> None:
    sign_up(client, "fay", "fay@example.com")
    mail_through_smtp.wait_for_mail("fay@example.com")
    assert client.post("/accounts/confirm-email/not-a-key/").status_code == 404
    user = User.objects.get(username="fay")
    assert not EmailAddress.objects.get(user=user).verified
    assert account_for(user).balance == 0


def test_sign_up_refuses_a_malformed_or_taken_address_and_stores_nothing(
    client: Client, mail_through_smtp: MailServer
) -> None:
    response = sign_up(client, "gil", "gil-at-example")
    assert response.status_code == 200
    assert "Enter a valid email address." in response.content.decode()
    taken = User.objects.create_user("holder", "taken@example.com", PASSWORD)
    EmailAddress.objects.create(user=taken, email="taken@example.com", verified=True, primary=True)
    response = sign_up(Client(), "gil", "Taken@example.com")
    assert response.status_code == 200
    assert "already registered with this email address" in response.content.decode()
    assert not User.objects.filter(username="gil").exists()
    assert mail_through_smtp.sent_to("gil-at-example") == []


def test_a_forgotten_password_is_reset_through_the_mailed_link(
    client: Client, mail_through_smtp: MailServer
) -> None:
    User.objects.create_user("ivy", "ivy@example.com", PASSWORD)
    response = client.post("/accounts/password/reset/", {"email": "ivy@example.com"})
    assert response.status_code == 302
    link = path_of(link_in(mail_through_smtp.wait_for_mail("ivy@example.com"), "/accounts/password/reset/"))

    form = client.get(link, follow=True)
    assert form.status_code == 200
    set_password = form.redirect_chain[-1][0] if form.redirect_chain else link
    mismatched = client.post(set_password, {"password1": NEW_PASSWORD, "password2": "something else"})
    assert mismatched.status_code == 200
    assert "You must type the same password each time." in mismatched.content.decode()
    assert (
        client.post(set_password, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}).status_code == 302
    )

    assert Client().post("/accounts/login/", {"login": "ivy", "password": PASSWORD}).status_code == 200
    assert Client().post("/accounts/login/", {"login": "ivy", "password": NEW_PASSWORD}).status_code == 302
    spent = Client().get(link, follow=True).content.decode()
    assert "The password reset link was invalid, possibly because it has already been used." in spent


def test_reset_mails_to_one_address_are_rate_limited(client: Client, mail_through_smtp: MailServer) -> None:
    User.objects.create_user("jo", "jo@example.com", PASSWORD)
    statuses = [
        client.post("/accounts/password/reset/", {"email": "jo@example.com"}).status_code for _ in range(6)
    ]
    assert statuses == [302] * 5 + [429]
    mail_through_smtp.wait_for_mail("jo@example.com", "Password Reset", count=5)
    assert len(mail_through_smtp.sent_to("jo@example.com")) == 5


def test_an_unverified_member_gets_no_free_credits_until_verified(
    free_credits_need_verification: None,
) -> None:
    user = User.objects.create_user("kai", "kai@example.com", PASSWORD)
    address = EmailAddress.objects.create(user=user, email="kai@example.com", primary=True)
    assert account_for(user).balance == 0
    address.verified = True
    address.save()
    assert account_for(user).balance == 25 * 100


def signed_in_member(name: str) -> tuple[User, Client]:
    user = User.objects.create_user(name, f"{name}@example.com", PASSWORD)
    EmailAddress.objects.create(user=user, email=f"{name}@example.com", verified=True, primary=True)
    client = Client()
    assert client.post("/accounts/login/", {"login": name, "password": PASSWORD}).status_code == 302
    return user, client


def test_a_member_adds_an_address_verifies_it_and_makes_it_primary(mail_through_smtp: MailServer) -> None:
    user, client = signed_in_member("max")
    malformed = client.post("/accounts/email/", {"email": "max-at-work", "action_add": ""})
    assert "Enter a valid email address." in malformed.content.decode()
    assert client.post("/accounts/email/", {"email": "max@work.example", "action_add": ""}).status_code == 302

    mail = mail_through_smtp.wait_for_mail("max@work.example", "Confirm")
    assert client.post(path_of(link_in(mail, "/accounts/confirm-email/"))).status_code == 302
    client.post("/accounts/email/", {"email": "max@work.example", "action_primary": ""})
    user.refresh_from_db()
    assert user.email == "max@work.example"
    assert set(EmailAddress.objects.filter(user=user).values_list("email", "verified", "primary")) == {
        ("max@example.com", True, False),
        ("max@work.example", True, True),
    }


def test_an_address_another_member_verified_never_becomes_anothers(mail_through_smtp: MailServer) -> None:
    signed_in_member("ned")
    user, client = signed_in_member("ora")
    # Whether an address is taken is not told (that would list members' addresses), but the
    # verification mailed to it cannot verify it for a second account.
    client.post("/accounts/email/", {"email": "Ned@example.com", "action_add": ""})
    mail = mail_through_smtp.wait_for_mail("ned@example.com", "Confirm")
    client.post(path_of(link_in(mail, "/accounts/confirm-email/")))
    assert not EmailAddress.objects.filter(user=user, email="ned@example.com", verified=True).exists()
    assert EmailAddress.objects.get(email="ned@example.com", verified=True).user.username == "ned"


def test_changing_the_password_needs_the_current_one() -> None:
    _, client = signed_in_member("pat")
    change = {"oldpassword": "not my password", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    refused = client.post("/accounts/password/change/", change)
    assert "Please type your current password." in refused.content.decode()
    assert client.post("/accounts/password/change/", {**change, "oldpassword": PASSWORD}).status_code == 302
    assert Client().post("/accounts/login/", {"login": "pat", "password": PASSWORD}).status_code == 200
    assert Client().post("/accounts/login/", {"login": "pat", "password": NEW_PASSWORD}).status_code == 302

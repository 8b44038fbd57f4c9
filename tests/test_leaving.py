"""Delete my account (issue 18, point 6): closing re-authenticates, cancels the Stripe
subscription through the gateway (a real localstripe behind tests/stripe_stub.py), deactivates the
member at once (sign-in, API keys, OAuth tokens, open sockets), cancels waiting generations and
releases their credits, and mails a restore link; after the grace period the dispatcher's chore
removes images (files or S3 objects), uploads, keys, webhooks and personal data, and keeps the
credit ledger whole and nameless."""

from __future__ import annotations

import asyncio
import html
import re
import time
from datetime import timedelta
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from channels.db import database_sync_to_async
from django.core import mail
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from accounts.models import AccountClosure, ApiKey, User
from accounts.services import api_key_create
from billing.credits import account_for
from billing.models import BillingAccount, CreditEntry, EntryKind
from gallery.services import like_image
from generations.leaving import account_close
from generations.leaving_chores import run_leaving_chores
from generations.models import Generation, GenerationStatus, Image, Upload
from generations.services import upload_create
from tests.billing_support import billing_on, deliver, envelope, localstripe
from tests.browser_support import off_the_browser_loop
from tests.gallery_support import make_image, png_bytes
from tests.test_billing_webhooks import checkout_events, subscribed
from tests.test_s3 import s3
from tests.test_two_factors import activate_authenticator_app, password_step, signed_in
from tests.test_websocket_revocation import opened
from tests.totp_support import totp_code
from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db
__all__ = ["billing_on", "localstripe", "s3"]

PASSWORD = "a long enough passphrase 42"
SITE = "http://testserver"


def member(username: str) -> User:
    user = User.objects.create_user(username, email=f"{username}@example.com", password=PASSWORD)
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user


def close_through_the_page(client: Client, user: User) -> Any:
    """Confirm on the page, then give the password again when allauth asks for it."""
    client.force_login(user)
    asked = client.post("/accounts/delete/", {"confirm": user.username})
    assert asked.status_code == 302 and "/accounts/reauthenticate/" in asked["Location"]
    assert User.objects.get(pk=user.pk).is_active  # nothing happens before the password
    return client.post(asked["Location"], {"password": PASSWORD})


def bearer(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def test_closing_asks_for_the_password_then_ends_every_way_in(client: Client) -> None:
    user = member("leaver")
    _, key = api_key_create(user=user)
    app = Application.objects.create(
        name="Sketchbook",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="http://localhost/cb",
    )
    expires = timezone.now() + timedelta(hours=1)
    AccessToken.objects.create(user=user, application=app, token="app-token-1", expires=expires, scope="read")
    assert bearer(key).get("/api/v1/models").status_code == 200
    assert bearer("app-token-1").get("/api/v1/models").status_code == 200

    closed = close_through_the_page(client, user)
    assert closed.status_code == 200 and "Your account is closed" in closed.content.decode()

    assert not User.objects.get(pk=user.pk).is_active
    assert bearer(key).get("/api/v1/models").status_code == 401
    assert bearer("app-token-1").get("/api/v1/models").status_code == 401
    assert client.get("/accounts/delete/").status_code == 302  # signed out
    signing_in = Client().post("/accounts/login/", {"login": "leaver", "password": PASSWORD})
    assert not signing_in.wsgi_request.user.is_authenticated
    (message,) = mail.outbox
    assert message.to == ["leaver@example.com"] and "closed" in message.subject
    assert re.search(r"http://testserver/accounts/restore/\S+/", str(message.body))


def test_a_wrong_confirmation_changes_nothing(client: Client) -> None:
    user = member("hesitant")
    client.force_login(user)
    asked = client.post("/accounts/delete/", {"confirm": "not my name"})
    answered = client.post(asked["Location"], {"password": PASSWORD})
    assert answered.status_code == 400 and "Type your username" in answered.content.decode()
    assert User.objects.get(pk=user.pk).is_active and not AccountClosure.objects.exists()
    assert mail.outbox == []


@pytest.mark.django_db(transaction=True)
def test_closing_cancels_the_stripe_subscription_through_the_gateway(client: Client, billing_on: str) -> None:
    user, subscription, local = subscribed("payer", "basic", billing_on)
    user.set_password(PASSWORD)
    user.save()
    for event in checkout_events(user, subscription, local):
        assert deliver(client, event).status_code == 200
    assert BillingAccount.objects.get(user=user).plan.slug == "basic"

    assert close_through_the_page(Client(), user).status_code == 200

    assert local.api("GET", f"/v1/subscriptions/{subscription['id']}")["status"] == "canceled"
    account = BillingAccount.objects.get(user=user)
    assert account.plan.slug == "free" and account.stripe_subscription_id == ""
    # Stripe's own word on it, arriving afterwards, changes nothing more.
    ended = local.api("GET", f"/v1/subscriptions/{subscription['id']}")
    assert deliver(client, envelope("customer.subscription.deleted", ended)).status_code == 200
    assert BillingAccount.objects.get(user=user).plan.slug == "free"


@pytest.mark.django_db(transaction=True)
def test_when_stripe_cannot_be_asked_nothing_is_closed(billing_on: str, settings: Any) -> None:
    user, subscription, local = subscribed("unlucky", "basic", billing_on)
    BillingAccount.objects.filter(user=user).update(
        stripe_subscription_id=subscription["id"], subscription_status="active"
    )
    user.set_password(PASSWORD)
    user.save()
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    answered = close_through_the_page(Client(), user)
    assert answered.status_code == 503 and "nothing was changed" in answered.content.decode()
    assert User.objects.get(pk=user.pk).is_active and not AccountClosure.objects.exists()
    assert local.api("GET", f"/v1/subscriptions/{subscription['id']}")["status"] == "active"


def test_waiting_generations_are_canceled_and_their_credits_released() -> None:
    user = member("busy")
    api = bearer(api_key_create(user=user)[1])
    before = account_for(user).balance
    for prompt in ("a kite", "a boat"):
        body = {"prompt": prompt, "width": 512, "height": 512, "steps": 20}
        assert api.post("/api/v1/generations", body, content_type="application/json").status_code == 202
    assert BillingAccount.objects.get(user=user).held > 0

    account_close(user=user, site=SITE)

    statuses = set(Generation.objects.filter(user=user).values_list("status", flat=True))
    assert statuses == {GenerationStatus.CANCELED}
    account = BillingAccount.objects.get(user=user)
    assert (account.balance, account.held) == (before, 0)


@pytest.mark.django_db(transaction=True)
def test_an_open_event_socket_is_closed_at_once() -> None:
    user = member("listener")
    _, key = api_key_create(user=user)

    async def scenario() -> None:
        socket = await opened(key)  # rechecked only every 10 s: the close must not wait for that
        await database_sync_to_async(account_close)(user=user, site=SITE)
        closed = await socket.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 4401}
        await socket.wait()

    off_the_browser_loop(asyncio.run, scenario())


def restore_path() -> str:
    found = re.search(r"http://testserver(/accounts/restore/\S+/)", str(mail.outbox[-1].body))
    assert found
    return found.group(1)


def test_the_mailed_link_restores_the_account_within_the_grace_period(client: Client) -> None:
    user = member("undecided")
    _, key = api_key_create(user=user)
    account_close(user=user, site=SITE)
    path = restore_path()
    assert "Restore my account" in client.get(path).content.decode()
    assert not User.objects.get(pk=user.pk).is_active  # a GET (a mail scanner) restores nothing
    assert client.post(path.replace("/restore/", "/restore/x")).status_code == 400  # forged
    assert client.post(path).status_code == 302
    assert User.objects.get(pk=user.pk).is_active and not AccountClosure.objects.exists()
    assert bearer(key).get("/api/v1/models").status_code == 200
    assert client.post(path).status_code == 400  # used


def test_the_link_no_longer_restores_once_the_grace_period_is_over(client: Client, settings: Any) -> None:
    settings.ATELIER_ACCOUNT_DELETION_GRACE_DAYS = 0
    user = member("toolate")
    account_close(user=user, site=SITE)
    assert client.post(restore_path()).status_code == 400
    assert not User.objects.get(pk=user.pk).is_active


def purge_now(user: User) -> None:
    AccountClosure.objects.filter(user=user).update(purge_after=timezone.now() - timedelta(seconds=1))
    assert run_leaving_chores().purged == 1


def test_the_purge_removes_what_they_made_and_keeps_the_ledger_nameless() -> None:
    user = member("gone")
    keeper = member("keeper")
    image = make_image(user, "my private sketch", public=False)
    shared = make_image(user, "a common picture")
    Image.objects.create(  # the same bytes made by someone else: a content-addressed file both use
        generation=make_image(keeper).generation, index=1, seed=1, width=64, height=64,
        original=shared.original, thumbnail=shared.thumbnail, sha256=shared.sha256,
    )  # fmt: skip
    upload = upload_create(user=user, data=png_bytes(32, 32, (9, 9, 9)))
    liked = make_image(keeper, "liked by gone")
    like_image(user=user, image=liked)
    WebhookEndpoint.objects.create(user=user, url="https://example.com/hook", secret="s")
    api_key_create(user=user)
    account = account_for(user)
    CreditEntry.objects.create(
        account=account, kind=EntryKind.CAPTURE, amount=0, credits=1_00, generation=image.generation
    )
    ledger = sorted(CreditEntry.objects.filter(account=account).values_list("kind", "amount", "credits"))
    assert default_storage.exists(image.original) and default_storage.exists(upload.file)

    account_close(user=user, site=SITE)
    assert run_leaving_chores().purged == 0  # the grace period runs
    assert default_storage.exists(image.original)
    purge_now(user)

    assert not default_storage.exists(image.original) and not default_storage.exists(upload.file)
    assert default_storage.exists(shared.original)  # still the keeper's image
    assert not Generation.objects.filter(user=user).exists() and not Upload.objects.filter(user=user).exists()
    assert not WebhookEndpoint.objects.filter(user=user).exists()
    assert not ApiKey.objects.filter(user=user).exists()
    assert Image.objects.get(pk=liked.pk).like_count == 0
    placeholder = User.objects.get(pk=user.pk)
    assert placeholder.username.startswith("deleted-") and placeholder.email == ""
    assert not placeholder.has_usable_password() and not placeholder.is_active
    assert not EmailAddress.objects.filter(user=user).exists()
    kept = CreditEntry.objects.filter(account__user=placeholder)
    assert sorted(kept.values_list("kind", "amount", "credits")) == ledger  # every amount intact
    assert not kept.filter(generation__isnull=False).exists()
    assert AccountClosure.objects.get(user=user).purged_at is not None
    assert run_leaving_chores().purged == 0  # once


def test_the_purge_waits_for_a_running_job_to_stop() -> None:
    user = member("running")
    generation = make_image(user).generation
    account_close(user=user, site=SITE)
    Generation.objects.filter(pk=generation.pk).update(status=GenerationStatus.RUNNING)  # a worker took it
    AccountClosure.objects.filter(user=user).update(purge_after=timezone.now())
    assert run_leaving_chores().purged == 0
    Generation.objects.filter(pk=generation.pk).update(status=GenerationStatus.CANCELED)
    assert run_leaving_chores().purged == 1


def test_the_purge_deletes_the_objects_in_s3(s3: Any) -> None:
    from tests.s3_support import BUCKET

    user = member("bucketless")
    image = make_image(user)
    assert s3.head_object(Bucket=BUCKET, Key=image.original)
    account_close(user=user, site=SITE)
    purge_now(user)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=image.original)
    assert listed.get("KeyCount", 0) == 0


def test_with_two_factors_the_code_confirms_the_closing() -> None:
    member("guarded")
    secret, _ = activate_authenticator_app(signed_in("guarded"))
    client = password_step("guarded")
    assert client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})["Location"] == "/create/"
    asked = client.post("/accounts/delete/", {"confirm": "guarded"})
    assert asked.status_code == 302 and "reauthenticate" in asked["Location"]
    page = client.get(asked["Location"]).content.decode()  # the password, or another way:
    other_way = re.search(r'href="(/accounts/2fa/reauthenticate/[^"]*)"', page)
    assert other_way, "the page offers the authenticator app"
    code_form = html.unescape(other_way.group(1))
    closed = client.post(code_form, {"code": totp_code(secret, time.time() + 30)})
    assert closed.status_code == 200 and "Your account is closed" in closed.content.decode()
    assert not User.objects.get(username="guarded").is_active

"""Stripe webhooks: verified, applied exactly once, converging on Stripe's state (via localstripe)."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import User
from billing import stripe_gateway
from billing.credits import account_for
from billing.models import BillingAccount, CreditEntry, EntryKind, StripeEvent
from tests.billing_support import SECRET, Localstripe, billing_on, deliver, envelope, localstripe
from tests.stripe_stub import sign_payload

pytestmark = pytest.mark.django_db
__all__ = ["billing_on", "localstripe"]


def subscribed(username: str, plan: str, url: str) -> tuple[User, dict[str, Any], Localstripe]:
    user = User.objects.create_user(username, email=f"{username}@example.com")
    account = account_for(user)
    customer = stripe_gateway.ensure_customer(account, user)
    local = Localstripe(url)
    return user, local.subscribe(customer, f"price_atelier_{plan}"), local


def checkout_events(user: User, subscription: dict[str, Any], local: Localstripe) -> list[dict[str, Any]]:
    session = {
        "id": "cs_test_1",
        "object": "checkout.session",
        "customer": subscription["customer"],
        "subscription": subscription["id"],
        "client_reference_id": str(user.pk),
        "metadata": {"user_id": str(user.pk)},
    }
    return [
        envelope("checkout.session.completed", session),
        envelope("customer.subscription.created", subscription),
        envelope("invoice.paid", local.invoice(subscription, "subscription_create")),
    ]


def account(user: User) -> BillingAccount:
    return BillingAccount.objects.select_related("plan", "scheduled_plan").get(user=user)


def test_a_full_subscription_lifecycle(client: Client, billing_on: str) -> None:
    user, subscription, local = subscribed("ann", "standard", billing_on)
    assert account(user).plan.slug == "free" and account(user).balance == 25_00
    for event in checkout_events(user, subscription, local):
        assert deliver(client, event).status_code == 200
    state = account(user)
    assert (state.plan.slug, state.subscription_status, state.balance) == ("standard", "active", 900_00)
    assert state.current_period_end is not None and state.current_period_end > timezone.now()
    assert CreditEntry.objects.filter(account=state, kind=EntryKind.EXPIRE, credits=25_00).exists()

    # Upgrade: immediate, and the prorated invoice grants the difference.
    subscription = local.switch(subscription, "price_atelier_pro")
    deliver(client, envelope("customer.subscription.updated", subscription))
    assert account(user).plan.slug == "pro"
    deliver(client, envelope("invoice.paid", local.invoice(subscription, "subscription_update")))
    assert account(user).balance == 2000_00

    # Downgrade: waits for the end of the period.
    subscription = local.switch(subscription, "price_atelier_basic")
    deliver(client, envelope("customer.subscription.updated", subscription))
    state = account(user)
    assert state.plan.slug == "pro" and state.scheduled_plan is not None
    assert state.scheduled_plan.slug == "basic"
    page = client_for(user).get("/billing/").content.decode()
    assert "Basic on" in page

    # The period ends (localstripe cannot travel in time, so the stored end moves back) and renews.
    BillingAccount.objects.filter(pk=state.pk).update(
        current_period_end=timezone.now() - timedelta(seconds=1)
    )
    deliver(client, envelope("invoice.paid", local.invoice(subscription, "subscription_cycle")))
    state = account(user)
    assert (state.plan.slug, state.scheduled_plan, state.balance) == ("basic", None, 200_00)

    # Cancellation: kept until the period ends, then Free.
    subscription = local.cancel_at_period_end(subscription)
    deliver(client, envelope("customer.subscription.updated", subscription))
    state = account(user)
    assert state.plan.slug == "basic" and state.scheduled_plan and state.scheduled_plan.slug == "free"
    deliver(client, envelope("customer.subscription.deleted", local.delete(subscription)))
    state = account(user)
    assert (state.plan.slug, state.stripe_subscription_id, state.subscription_status) == ("free", "", "")


def client_for(user: User) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


def test_a_duplicated_delivery_has_one_effect(client: Client, billing_on: str) -> None:
    user, subscription, local = subscribed("bea", "basic", billing_on)
    events = checkout_events(user, subscription, local)
    for event in events:
        deliver(client, event)
    again = deliver(client, events[-1])
    assert again.status_code == 200 and again.json()["duplicate"] is True
    grants = CreditEntry.objects.filter(
        account=account(user), kind=EntryKind.GRANT, reference=events[-1]["data"]["object"]["id"]
    )
    assert grants.count() == 1
    assert account(user).balance == 200_00


@pytest.mark.django_db(transaction=True)
def test_racing_deliveries_of_one_event_have_one_effect(billing_on: str) -> None:
    user, subscription, local = subscribed("cat", "pro", billing_on)
    events = checkout_events(user, subscription, local)
    for event in events[:2]:
        deliver(Client(), event)
    paid = events[2]
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def race() -> None:
        barrier.wait()
        try:
            statuses.append(deliver(Client(), paid).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=race) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 6
    assert StripeEvent.objects.filter(event_id=paid["id"]).count() == 1
    assert (
        CreditEntry.objects.filter(kind=EntryKind.GRANT, reference=paid["data"]["object"]["id"]).count() == 1
    )
    assert account(user).balance == 2000_00


def test_out_of_order_events_converge_on_stripes_current_state(client: Client, billing_on: str) -> None:
    user, subscription, local = subscribed("dan", "standard", billing_on)
    (created,) = [e for e in checkout_events(user, subscription, local) if e["type"].endswith("created")]
    paid = envelope("invoice.paid", local.invoice(subscription, "subscription_create"))
    upgraded = local.switch(subscription, "price_atelier_pro")
    # The upgrade's event arrives first, then the stale creation and the first invoice.
    deliver(client, envelope("customer.subscription.updated", upgraded))
    deliver(client, created)
    deliver(client, paid)
    state = account(user)
    assert state.plan.slug == "pro"
    assert state.stripe_subscription_id == subscription["id"]


@pytest.mark.parametrize("tamper", ["wrong_secret", "missing", "stale", "body_changed"])
def test_bad_signatures_are_refused_without_side_effects(
    client: Client, billing_on: str, tamper: str
) -> None:
    user, subscription, local = subscribed("eve", "pro", billing_on)
    event = checkout_events(user, subscription, local)[0]
    if tamper == "wrong_secret":
        response = deliver(client, event, secret="whsec_other")
    elif tamper == "stale":
        response = deliver(client, event, timestamp=int(time.time()) - 3600)
    elif tamper == "missing":
        response = client.post("/billing/stripe/webhook/", event, content_type="application/json")
    else:
        payload = json.dumps(event).encode()
        header = sign_payload(payload, SECRET)
        response = client.post(
            "/billing/stripe/webhook/",
            payload.replace(b"cs_test_1", b"cs_test_2"),
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=header,
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"
    assert StripeEvent.objects.count() == 0
    assert account(user).plan.slug == "free"


def test_unknown_event_types_are_acknowledged_and_ignored(client: Client, billing_on: str) -> None:
    response = deliver(client, envelope("customer.tax_id.created", {"id": "txi_1"}))
    assert response.status_code == 200
    assert StripeEvent.objects.filter(type="customer.tax_id.created").count() == 1


def test_webhooks_are_refused_while_billing_is_disabled(client: Client, settings: Any) -> None:
    settings.BILLING_ENABLED = False
    response = client.post("/billing/stripe/webhook/", "{}", content_type="application/json")
    assert response.status_code == 503

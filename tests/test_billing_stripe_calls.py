"""No Stripe API call is made inside a database transaction (issue 17, Low 12): a slow Stripe
would hold the account's row lock, and every submission of that user waits on it."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client

from billing import stripe_gateway
from tests.billing_support import billing_on, deliver, envelope, localstripe
from tests.test_billing_webhooks import account, checkout_events, subscribed

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["billing_on", "localstripe"]


def test_stripe_is_asked_before_the_account_is_locked(
    client: Client, billing_on: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, subscription, local = subscribed("nolock", "basic", billing_on)
    calls: list[bool] = []  # for each call: was a transaction open?
    real = stripe_gateway.retrieve_subscription

    def watched(subscription_id: str) -> Any:
        calls.append(connection.in_atomic_block)
        return real(subscription_id)

    monkeypatch.setattr(stripe_gateway, "retrieve_subscription", watched)
    events = checkout_events(user, subscription, local)
    events.append(envelope("customer.subscription.updated", subscription))
    for event in events:
        assert deliver(client, event).status_code == 200
    assert calls and not any(calls), calls
    assert account(user).plan.slug == "basic" and account(user).balance == 200_00

"""Helpers for billing tests: a localstripe with Atelier's prices, and signed event delivery."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from django.test import Client

from tests.stripe_stub import (
    API_VERSION,
    TEST_CARD,
    StripeStub,
    sign_payload,
    start_localstripe,
    stop_localstripe,
)

SECRET = "whsec_atelier_test"
PRICES = {"basic": 1000, "standard": 3000, "pro": 6000}


def create_prices(url: str) -> None:
    stripe.api_key, stripe.api_base = "sk_test_atelier", url
    product = stripe.Product.create(name="Atelier")
    for slug, amount in PRICES.items():
        stripe.Plan.create(
            id=f"price_atelier_{slug}", product=product.id, amount=amount, currency="usd", interval="month"
        )


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    process, url = start_localstripe()
    try:
        create_prices(url)
        yield url
    finally:
        stop_localstripe(process)


@pytest.fixture
def billing_on(settings: Any, localstripe: str) -> str:
    settings.STRIPE_SECRET_KEY = "sk_test_atelier"
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    settings.STRIPE_API_BASE = localstripe
    settings.BILLING_ENABLED = True
    settings.ATELIER_DEFAULT_PLAN = "free"
    return localstripe


def envelope(type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": type,
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "api_version": API_VERSION,
    }


def deliver(
    client: Client, event: dict[str, Any], *, secret: str = SECRET, timestamp: int | None = None
) -> Any:
    payload = json.dumps(event).encode()
    return client.post(
        "/billing/stripe/webhook/",
        payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign_payload(payload, secret, timestamp),
    )


class Localstripe(StripeStub):
    """Direct calls to localstripe, standing in for what Checkout and the Portal do at Stripe."""

    def __init__(self, url: str) -> None:
        super().__init__(localstripe_url=url, webhook_url="", webhook_secret=SECRET)

    def subscribe(self, customer: str, plan: str) -> dict[str, Any]:
        self.api("POST", f"/v1/customers/{customer}/sources", {"source": TEST_CARD})
        created = self.api("POST", "/v1/subscriptions", {"customer": customer, "items": [{"plan": plan}]})
        return self.api("GET", f"/v1/subscriptions/{created['id']}")

    def switch(self, subscription: dict[str, Any], plan: str) -> dict[str, Any]:
        item = {"id": subscription["items"]["data"][0]["id"], "plan": plan}
        self.api("POST", f"/v1/subscriptions/{subscription['id']}", {"items": [item]})
        return self.api("GET", f"/v1/subscriptions/{subscription['id']}")

    def cancel_at_period_end(self, subscription: dict[str, Any]) -> dict[str, Any]:
        self.api("POST", f"/v1/subscriptions/{subscription['id']}", {"cancel_at_period_end": True})
        return self.api("GET", f"/v1/subscriptions/{subscription['id']}")

    def delete(self, subscription: dict[str, Any]) -> dict[str, Any]:
        return self.api("DELETE", f"/v1/subscriptions/{subscription['id']}")

    def invoice(self, subscription: dict[str, Any], reason: str) -> dict[str, Any]:
        """The subscription's invoice as Stripe would send it for ``reason`` (a recorded shape)."""
        invoice = self.invoice_for(subscription)
        if reason != "subscription_create":
            plan = subscription["items"]["data"][0]["plan"]
            invoice = invoice | {
                "id": f"in_{uuid.uuid4().hex[:20]}",
                "lines": {"object": "list", "data": [{"plan": plan, "type": "subscription"}]},
            }
        return invoice | {"billing_reason": reason}

"""The local Stripe (tests/stripe_stub.py) driven by the official stripe library."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import stripe

from tests.stripe_stub import StripeStub, sign_payload, start_localstripe, stop_localstripe

SECRET = "whsec_test_secret"


@dataclass
class Received:
    payload: bytes
    signature: str

    @property
    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.payload)
        return event


@dataclass
class Receiver:
    """A webhook endpoint that records what it is sent."""

    url: str = ""
    received: list[Received] = field(default_factory=list)

    def types(self) -> list[str]:
        return [r.event["type"] for r in self.received]


@pytest.fixture(scope="module")
def localstripe_url() -> Iterator[str]:
    process, url = start_localstripe()
    try:
        yield url
    finally:
        stop_localstripe(process)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    record = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            payload = self.rfile.read(int(self.headers["Content-Length"]))
            record.received.append(Received(payload, self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record.url = f"http://127.0.0.1:{server.server_address[1]}/billing/webhook/"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield record
    server.shutdown()
    server.server_close()


@pytest.fixture
def stub(localstripe_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeStub]:
    local = StripeStub(
        localstripe_url=localstripe_url, webhook_url=receiver.url, webhook_secret=SECRET
    ).start()
    local.reset()
    monkeypatch.setattr(stripe, "api_key", "sk_test_x")
    monkeypatch.setattr(stripe, "api_base", local.url)
    monkeypatch.setattr(stripe, "max_network_retries", 0)
    yield local
    local.stop()


def make_plans() -> tuple[stripe.Plan, stripe.Plan]:
    product = stripe.Product.create(name="Atelier Pro")
    monthly = stripe.Plan.create(
        id="pro-monthly", product=product.id, amount=1500, currency="usd", interval="month", nickname="Pro"
    )
    yearly = stripe.Plan.create(
        id="pro-yearly",
        product=product.id,
        amount=15000,
        currency="usd",
        interval="year",
        nickname="Pro yearly",
    )
    return monthly, yearly


def checkout(customer: str, price: str) -> stripe.checkout.Session:
    return stripe.checkout.Session.create(
        mode="subscription",
        customer=customer,
        line_items=[{"price": price, "quantity": 1}],
        success_url="http://app.test/billing/success?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="http://app.test/billing/cancel",
        client_reference_id="user-42",
        metadata={"user_id": "42"},
    )


def verified(received: Received) -> stripe.Event:
    event: stripe.Event = stripe.Webhook.construct_event(received.payload, received.signature, SECRET)
    return event


def test_forwards_products_plans_and_customers_to_localstripe(stub: StripeStub) -> None:
    monthly, _ = make_plans()
    customer = stripe.Customer.create(email="alice@example.com", metadata={"user_id": "42"})

    assert stripe.Customer.retrieve(customer.id).email == "alice@example.com"
    assert {plan.id for plan in stripe.Plan.list()} == {"pro-monthly", "pro-yearly"}
    assert stripe.Plan.retrieve("pro-monthly").amount == monthly.amount == 1500
    with pytest.raises(stripe.InvalidRequestError):
        stripe.Customer.retrieve("cus_missing")


def test_checkout_creates_subscription_and_sends_signed_events(stub: StripeStub, receiver: Receiver) -> None:
    make_plans()
    customer = stripe.Customer.create(email="alice@example.com")
    session = checkout(customer.id, "pro-monthly")
    assert session.id.startswith("cs_test_")
    assert session.url == f"{stub.url}/checkout/{session.id}"
    assert session.status == "open"
    assert stripe.checkout.Session.retrieve(session.id).client_reference_id == "user-42"

    page = requests.get(session.url, timeout=10)
    assert "Pay" in page.text
    assert "pro-monthly" in page.text
    paid = requests.post(session.url, allow_redirects=False, timeout=10)
    assert paid.status_code == 303
    assert paid.headers["Location"] == f"http://app.test/billing/success?session_id={session.id}"

    assert receiver.types() == ["checkout.session.completed", "customer.subscription.created", "invoice.paid"]
    completed, created, invoice_paid = (verified(r) for r in receiver.received)
    done = completed.data.object
    assert (done.id, done.status, done.customer) == (session.id, "complete", customer.id)
    assert (done.client_reference_id, done.metadata["user_id"]) == ("user-42", "42")
    subscription = stripe.Subscription.retrieve(done.subscription)
    assert created.data.object.id == subscription.id
    assert subscription.status == "active"
    assert subscription["items"].data[0].plan.id == "pro-monthly"
    # localstripe's pre-2025 shape: the period is on the subscription (stripe 16's types lack it).
    assert subscription["current_period_end"] > subscription["current_period_start"]
    assert subscription.cancel_at_period_end is False
    invoice = invoice_paid.data.object
    assert (invoice.customer, invoice.subscription, invoice.status) == (customer.id, subscription.id, "paid")
    assert invoice.billing_reason == "subscription_create"
    assert invoice.lines.data[0].period.end == invoice.period_end == subscription["current_period_end"]
    assert stripe.checkout.Session.retrieve(session.id).subscription == subscription.id
    expanded = stripe.checkout.Session.retrieve(session.id, expand=["subscription"]).subscription
    assert isinstance(expanded, stripe.Subscription)
    assert expanded.id == subscription.id

    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            receiver.received[0].payload, receiver.received[0].signature, "whsec_x"
        )


def test_portal_switch_and_cancel_send_subscription_events(stub: StripeStub, receiver: Receiver) -> None:
    make_plans()
    customer = stripe.Customer.create(email="bob@example.com")
    requests.post(str(checkout(customer.id, "pro-monthly").url), allow_redirects=False, timeout=10)
    portal = stripe.billing_portal.Session.create(customer=customer.id, return_url="http://app.test/billing/")
    assert portal.url == f"{stub.url}/portal/{portal.id}"
    page = requests.get(portal.url, timeout=10).text
    assert "Switch to pro-yearly" in page
    assert "Cancel subscription" in page
    receiver.received.clear()

    switched = requests.post(
        portal.url, data={"action": "switch:pro-yearly"}, allow_redirects=False, timeout=10
    )
    assert (switched.status_code, switched.headers["Location"]) == (303, "http://app.test/billing/")
    (updated,) = (verified(r) for r in receiver.received)
    assert updated.type == "customer.subscription.updated"
    assert updated.data.object["items"].data[0].plan.id == "pro-yearly"
    assert updated.data["previous_attributes"]["plan"]["id"] == "pro-monthly"
    subscription = stripe.Subscription.retrieve(updated.data.object.id)
    assert subscription["items"].data[0].plan.id == "pro-yearly"

    requests.post(portal.url, data={"action": "cancel"}, allow_redirects=False, timeout=10)
    canceling = verified(receiver.received[-1])
    assert (canceling.type, canceling.data.object.cancel_at_period_end) == (
        "customer.subscription.updated",
        True,
    )
    subscription = stripe.Subscription.retrieve(subscription.id)
    assert (subscription.cancel_at_period_end, subscription.status) == (True, "active")

    requests.post(portal.url, data={"action": "cancel_now"}, allow_redirects=False, timeout=10)
    deleted = verified(receiver.received[-1])
    assert (deleted.type, deleted.data.object.status) == ("customer.subscription.deleted", "canceled")
    assert stripe.Subscription.retrieve(subscription.id).status == "canceled"


def test_send_event_signs_and_replays(stub: StripeStub, receiver: Receiver) -> None:
    digest = hmac.new(b"whsec_a", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign_payload(b"{}", "whsec_a", timestamp=1700000000) == f"t=1700000000,v1={digest}"
    header = sign_payload(b'{"id": "evt_1"}', SECRET)
    stripe.WebhookSignature.verify_header('{"id": "evt_1"}', header, SECRET)

    response = stub.send_event("invoice.payment_failed", {"id": "in_1", "object": "invoice"})
    assert response.status_code == 200
    stub.post_event(stub.events[0])  # a duplicate delivery: same event id
    stub.post_event(stub.events[0], secret="whsec_wrong")
    first, duplicate, forged = receiver.received
    assert verified(first).id == verified(duplicate).id == stub.events[0]["id"]
    with pytest.raises(stripe.SignatureVerificationError):
        verified(forged)


def test_stripe_client_with_base_addresses(stub: StripeStub) -> None:
    make_plans()
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": stub.url}, max_network_retries=0)
    customer = client.v1.customers.create(params={"email": "carol@example.com"})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": "pro-yearly", "quantity": 1}],
            "success_url": "http://app.test/ok",
        }
    )
    requests.post(session.url or "", allow_redirects=False, timeout=10)
    subscription_id = client.v1.checkout.sessions.retrieve(session.id).subscription
    assert isinstance(subscription_id, str)
    subscription = client.v1.subscriptions.retrieve(subscription_id)
    assert subscription["items"].data[0].plan.id == "pro-yearly"

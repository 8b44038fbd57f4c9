"""The one module that talks to Stripe, through the official library. Every POST carries an
idempotency key, so a retried call never creates a second customer or session."""

from __future__ import annotations

import uuid
from typing import Any

import stripe
from django.conf import settings

from accounts.models import User
from billing.models import BillingAccount, Plan


def configure() -> None:
    stripe.api_key = settings.STRIPE_SECRET_KEY
    if settings.STRIPE_API_BASE:
        stripe.api_base = settings.STRIPE_API_BASE
    stripe.max_network_retries = 2


def ensure_customer(account: BillingAccount, user: User) -> str:
    if account.stripe_customer_id:
        return account.stripe_customer_id
    configure()
    params: dict[str, Any] = {"metadata": {"user_id": str(user.pk), "username": user.username}}
    if user.email:
        params["email"] = user.email
    customer = stripe.Customer.create(idempotency_key=f"customer-{user.pk}-{account.pk}", **params)
    BillingAccount.objects.filter(pk=account.pk, stripe_customer_id="").update(stripe_customer_id=customer.id)
    account.refresh_from_db(fields=["stripe_customer_id"])
    return account.stripe_customer_id


def checkout_session(
    *, account: BillingAccount, user: User, plan: Plan, success_url: str, cancel_url: str
) -> str:
    customer = ensure_customer(account, user)
    configure()
    session = stripe.checkout.Session.create(
        mode="subscription",
        customer=customer,
        line_items=[{"price": plan.stripe_price_id, "quantity": 1}],
        success_url=success_url,
        cancel_url=cancel_url,
        client_reference_id=str(user.pk),
        metadata={"user_id": str(user.pk), "plan": plan.slug},
        idempotency_key=f"checkout-{uuid.uuid4()}",
    )
    return str(session.url)


def portal_session(*, account: BillingAccount, user: User, return_url: str) -> str:
    customer = ensure_customer(account, user)
    configure()
    session = stripe.billing_portal.Session.create(
        customer=customer, return_url=return_url, idempotency_key=f"portal-{uuid.uuid4()}"
    )
    return str(session.url)


def retrieve_subscription(subscription_id: str) -> dict[str, Any] | None:
    """Stripe's current state of a subscription; None when Stripe no longer knows it."""
    configure()
    try:
        subscription = stripe.Subscription.retrieve(subscription_id)
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            return None
        raise
    return subscription.to_dict()


def cancel_subscription(subscription_id: str) -> None:
    """End a subscription now, without a refund or a last invoice (the member closed their
    account); one that Stripe no longer knows is already gone."""
    configure()
    try:
        stripe.Subscription.cancel(subscription_id, idempotency_key=f"cancel-{subscription_id}")
    except stripe.InvalidRequestError as exc:
        if exc.http_status != 404:
            raise


def verify_event(payload: bytes, signature: str) -> dict[str, Any]:
    """The event, if the signature over the raw body is valid and recent; else SignatureVerificationError."""
    event = stripe.Webhook.construct_event(
        payload, signature, settings.STRIPE_WEBHOOK_SECRET, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE
    )
    return dict(event.to_dict())


SignatureError = stripe.SignatureVerificationError
StripeError = stripe.StripeError

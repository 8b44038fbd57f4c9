"""Stripe events: each processed exactly once, converging on Stripe's current state.

The event only says *that* something changed; the subscription is re-fetched, so events that
arrive late or out of order still leave the account as Stripe has it now. It is fetched before
the transaction that locks the account's row (`StripeView`): a slow Stripe must not hold that
lock, which every submission of the user takes.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction

from billing import stripe_gateway
from billing.credits import apply_due_changes, free_plan, grant_credits, start_period
from billing.models import BillingAccount, Plan, StripeEvent, SubscriptionStatus

log = logging.getLogger(__name__)

ENDED = (SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED)


class StripeView:
    """The subscriptions an event's handler consults, as Stripe has them now, asked for before
    the account is locked."""

    def __init__(self, subscription_ids: set[str]) -> None:
        self.subscriptions = {
            sid: stripe_gateway.retrieve_subscription(sid) for sid in sorted(subscription_ids)
        }

    def subscription(self, subscription_id: str) -> dict[str, Any] | None:
        if subscription_id not in self.subscriptions:
            # The account changed subscription between the look-ahead and the lock (a racing
            # event): ask now, under the lock, rather than act on a guess.
            log.warning("subscription %s was not fetched ahead", subscription_id)
            self.subscriptions[subscription_id] = stripe_gateway.retrieve_subscription(subscription_id)
        return self.subscriptions[subscription_id]


def subscriptions_to_fetch(event: dict[str, Any]) -> set[str]:
    """The subscription the event names and the account's current one, read without a lock."""
    obj, kind = event["data"]["object"], event["type"]
    if kind not in HANDLERS:
        return set()
    if kind == "checkout.session.completed":
        named = obj.get("subscription")
        user_id = str(obj.get("client_reference_id") or (obj.get("metadata") or {}).get("user_id") or "")
        accounts = BillingAccount.objects.filter(user_id=int(user_id)) if user_id.isdigit() else None
    else:
        named = obj["id"] if kind.startswith("customer.subscription.") else None
        named = named or obj.get("subscription") or nested_subscription(obj)
        customer = obj.get("customer")
        accounts = BillingAccount.objects.filter(stripe_customer_id=customer) if customer else None
    current = (
        accounts.values_list("stripe_subscription_id", flat=True).first() if accounts is not None else None
    )
    return {sid for sid in (named, current) if sid}


def process_event(event: dict[str, Any]) -> bool:
    """Apply an event once. False when this event id was already processed."""
    if StripeEvent.objects.filter(event_id=event["id"]).exists():
        return False
    stripe_view = StripeView(subscriptions_to_fetch(event))
    try:
        with transaction.atomic():
            StripeEvent.objects.create(event_id=event["id"], type=event["type"], payload=event)
            handler = HANDLERS.get(event["type"])
            if handler is not None:
                handler(event["data"]["object"], stripe_view)
    except IntegrityError:
        if StripeEvent.objects.filter(event_id=event["id"]).exists():
            return False
        raise
    return True


def account_by_customer(customer_id: str | None) -> BillingAccount | None:
    if not customer_id:
        return None
    return BillingAccount.objects.select_for_update().filter(stripe_customer_id=customer_id).first()


def on_checkout_completed(session: dict[str, Any], stripe_view: StripeView) -> None:
    user_id = str(session.get("client_reference_id") or (session.get("metadata") or {}).get("user_id") or "")
    if not user_id.isdigit():
        log.warning("checkout without a user reference: %s", session.get("id"))
        return
    account = BillingAccount.objects.select_for_update().filter(user_id=int(user_id)).first()
    if account is None:
        log.warning("checkout for unknown user %s", user_id)
        return
    account.stripe_customer_id = session.get("customer") or account.stripe_customer_id
    account.stripe_subscription_id = session.get("subscription") or account.stripe_subscription_id
    account.save(update_fields=["stripe_customer_id", "stripe_subscription_id", "updated_at"])
    if account.stripe_subscription_id:
        sync_subscription(account, account.stripe_subscription_id, stripe_view)


def on_subscription_changed(subscription: dict[str, Any], stripe_view: StripeView) -> None:
    account = account_by_customer(subscription.get("customer"))
    if account is None:
        return
    if account.stripe_subscription_id and account.stripe_subscription_id != subscription["id"]:
        current = stripe_view.subscription(account.stripe_subscription_id)
        if current is not None and current.get("status") not in ENDED:
            return  # an event about an older subscription of this customer
    sync_subscription(account, subscription["id"], stripe_view)


def on_invoice_paid(invoice: dict[str, Any], stripe_view: StripeView) -> None:
    account = account_by_customer(invoice.get("customer"))
    subscription_id = invoice.get("subscription") or nested_subscription(invoice)
    if account is None or not subscription_id:
        return
    if not account.stripe_subscription_id:
        account.stripe_subscription_id = subscription_id
        account.save(update_fields=["stripe_subscription_id", "updated_at"])
    sync_subscription(account, subscription_id, stripe_view)
    plan = plan_for_subscription_invoice(invoice) or account.plan
    reason = invoice.get("billing_reason", "")
    if reason == "subscription_update":
        # An upgrade mid-period: top the period up to the new plan's grant.
        extra = plan.monthly_credits * 100 - account.period_credits
        grant_credits(account, extra, reference=invoice["id"], note=f"upgrade to {plan.name}")
    else:
        start_period(
            account, account.plan.monthly_credits * 100, reference=invoice["id"], note=f"{plan.name} renewal"
        )


def on_payment_failed(invoice: dict[str, Any], stripe_view: StripeView) -> None:
    account = account_by_customer(invoice.get("customer"))
    if account is not None and account.stripe_subscription_id:
        sync_subscription(account, account.stripe_subscription_id, stripe_view)


HANDLERS = {
    "checkout.session.completed": on_checkout_completed,
    "customer.subscription.created": on_subscription_changed,
    "customer.subscription.updated": on_subscription_changed,
    "customer.subscription.deleted": on_subscription_changed,
    "invoice.paid": on_invoice_paid,
    "invoice.payment_failed": on_payment_failed,
}


def nested_subscription(invoice: dict[str, Any]) -> str | None:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    value = details.get("subscription")
    return str(value) if value else None


def price_id(subscription: dict[str, Any]) -> str | None:
    items = (subscription.get("items") or {}).get("data") or []
    if not items:
        plan = subscription.get("plan") or {}
        return plan.get("id")
    item = items[0]
    return (item.get("price") or {}).get("id") or (item.get("plan") or {}).get("id")


def plan_for_subscription_invoice(invoice: dict[str, Any]) -> Plan | None:
    for line in (invoice.get("lines") or {}).get("data") or []:
        price = (line.get("price") or {}).get("id") or (line.get("plan") or {}).get("id")
        plan = Plan.objects.filter(stripe_price_id=price).first() if price else None
        if plan is not None:
            return plan
    return None


def period_end(subscription: dict[str, Any]) -> datetime | None:
    value = subscription.get("current_period_end")
    if value is None:
        items = (subscription.get("items") or {}).get("data") or []
        value = items[0].get("current_period_end") if items else None
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def sync_subscription(account: BillingAccount, subscription_id: str, stripe_view: StripeView) -> None:
    """Make the account match Stripe's subscription: upgrades now, downgrades at period end."""
    apply_due_changes(account)
    subscription = stripe_view.subscription(subscription_id)
    status = (subscription or {}).get("status", SubscriptionStatus.CANCELED)
    if subscription is None or status in ENDED:
        account.plan = free_plan()
        account.scheduled_plan = None
        account.stripe_subscription_id = ""
        account.subscription_status = ""
        account.cancel_at_period_end = False
        account.save()
        return
    paid_plan = Plan.objects.filter(stripe_price_id=price_id(subscription)).first()
    if paid_plan is None:
        log.error("subscription %s has an unknown price %s", subscription_id, price_id(subscription))
        return
    account.stripe_subscription_id = subscription_id
    account.subscription_status = status
    account.current_period_end = period_end(subscription)
    account.cancel_at_period_end = bool(subscription.get("cancel_at_period_end"))
    if paid_plan.rank >= account.plan.rank:
        account.plan = paid_plan
        account.scheduled_plan = None
    else:
        account.scheduled_plan = paid_plan
    if account.cancel_at_period_end:
        account.scheduled_plan = free_plan()
    account.save()

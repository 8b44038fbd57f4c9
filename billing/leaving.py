"""Billing's part in closing an account: the subscription ends at once through Stripe (outside
any transaction, as every Stripe call here), the account drops to the free plan, and at the purge
the Stripe customer's id is forgotten. The ledger itself is never touched: its amounts stay."""

from __future__ import annotations

from django.conf import settings

from accounts.models import User
from billing import stripe_gateway
from billing.credits import free_plan
from billing.models import BillingAccount

StripeError = stripe_gateway.StripeError


def subscription_end_now(*, user: User) -> bool:
    """Cancel the member's subscription at Stripe and drop them to the free plan; False when they
    had none. Raises StripeError when Stripe could not be asked (nothing is changed then)."""
    account = BillingAccount.objects.filter(user=user).first()
    if account is None or not account.stripe_subscription_id:
        return False
    if settings.BILLING_ENABLED:
        stripe_gateway.cancel_subscription(account.stripe_subscription_id)
    BillingAccount.objects.filter(pk=account.pk).update(
        plan=free_plan(),
        scheduled_plan=None,
        stripe_subscription_id="",
        subscription_status="",
        cancel_at_period_end=False,
    )
    return True


def customer_forget(*, user: User) -> None:
    """The purge: the account no longer names the person's Stripe customer."""
    BillingAccount.objects.filter(user=user).update(stripe_customer_id="")

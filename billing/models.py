"""Plans, each user's billing account with its credit balance, the credit ledger, Stripe events.

Credits are stored in hundredths (1 credit = 100) so that fractional costs stay exact integers.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Lane(models.TextChoices):
    PRIORITY = "priority"
    STANDARD = "standard"
    FREE = "free"


class Plan(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    rank = models.PositiveSmallIntegerField(default=0, help_text="Higher is a better plan.")
    price_cents = models.PositiveIntegerField(default=0, help_text="Monthly price shown on the pricing page.")
    stripe_price_id = models.CharField(max_length=100, blank=True, db_index=True)
    monthly_credits = models.PositiveIntegerField()
    lane = models.CharField(max_length=16, choices=Lane.choices, default=Lane.FREE)
    relax_allowed = models.BooleanField(default=False)
    private_allowed = models.BooleanField(default=False)
    max_concurrent = models.PositiveSmallIntegerField(default=1)
    max_pending = models.PositiveSmallIntegerField(default=2)
    api_rate_per_minute = models.PositiveIntegerField(default=30)
    pools = models.CharField(max_length=200, blank=True, help_text="Comma-separated pools; empty: all.")

    class Meta:
        ordering = ["rank"]

    def __str__(self) -> str:
        return self.name

    def allows_pool(self, pool: str) -> bool:
        allowed = {p.strip() for p in self.pools.split(",") if p.strip()}
        return not allowed or pool in allowed


class SubscriptionStatus(models.TextChoices):
    NONE = ""
    ACTIVE = "active"
    TRIALING = "trialing"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    CANCELED = "canceled"
    PAUSED = "paused"


# While a payment is overdue the account keeps its subscription but gets Free limits.
DELINQUENT = (SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID, SubscriptionStatus.INCOMPLETE)


class BillingAccount(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="billing")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    scheduled_plan = models.ForeignKey(
        Plan,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Takes effect at the end of the current period (downgrades and cancellations).",
    )
    stripe_customer_id = models.CharField(max_length=100, blank=True, db_index=True)
    stripe_subscription_id = models.CharField(max_length=100, blank=True, db_index=True)
    subscription_status = models.CharField(max_length=32, blank=True, choices=SubscriptionStatus.choices)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    balance = models.BigIntegerField(default=0, help_text="Available credits, in hundredths.")
    held = models.BigIntegerField(
        default=0, help_text="Credits held by unfinished generations, in hundredths."
    )
    period_credits = models.BigIntegerField(default=0, help_text="Credits granted for this period so far.")
    granted_month = models.CharField(max_length=7, blank=True, help_text="Last monthly grant (YYYY-MM).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="balance_never_negative"),
            models.CheckConstraint(condition=Q(held__gte=0), name="held_never_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.user} on {self.plan}"

    @property
    def is_delinquent(self) -> bool:
        return self.subscription_status in DELINQUENT


class EntryKind(models.TextChoices):
    GRANT = "grant"
    EXPIRE = "expire"
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"
    ADJUST = "adjust"


class CreditEntry(models.Model):
    """One movement of credits. ``amount`` is in hundredths and is how the available balance moved
    (a capture moves held credits out, so the available balance does not change)."""

    account = models.ForeignKey(BillingAccount, on_delete=models.CASCADE, related_name="entries")
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    amount = models.BigIntegerField()
    credits = models.BigIntegerField(help_text="Credits concerned, in hundredths (always positive).")
    generation = models.ForeignKey(
        "generations.Generation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reference = models.CharField(max_length=120, blank=True)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "kind", "reference"],
                condition=~Q(reference=""),
                name="one_entry_per_reference",
            ),
            models.UniqueConstraint(
                fields=["generation", "kind"],
                condition=Q(generation__isnull=False),
                name="one_entry_per_generation_and_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.credits / 100:.2f}"


class StripeEvent(models.Model):
    """Every Stripe event we processed, by id: a redelivery finds its row and changes nothing."""

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"

"""Credits: cost, hold at submission, capture per finished image, release the rest, grants.

Every change of a balance is a conditional UPDATE plus a ledger entry in the same transaction, so
concurrent submissions can never spend the same credits twice and the balance never goes negative.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from accounts.selectors import has_verified_email
from billing.models import BillingAccount, CreditEntry, EntryKind, Plan
from billing.plans import seed_plans
from core import sql

BASE_PIXELS = 512 * 512
BASE_STEPS = 20


class InsufficientCredits(Exception):
    def __init__(self, required: int, available: int):
        self.required, self.available = required, available
        super().__init__(f"{format_credits(required)} credits needed, {format_credits(available)} available")


@dataclass(frozen=True)
class Cost:
    per_image: int
    total: int


def format_credits(hundredths: int) -> str:
    return f"{hundredths / 100:.2f}"


def generation_cost(*, width: int, height: int, steps: int, n: int, multiplier: float, relax: bool) -> Cost:
    """1 credit is one 512x512, 20-step image on a model with multiplier 1; relax mode is free."""
    if relax:
        return Cost(0, 0)
    per_image = max(1, math.ceil(100 * (width * height / BASE_PIXELS) * (steps / BASE_STEPS) * multiplier))
    return Cost(per_image, per_image * n)


def plan_by_slug(slug: str) -> Plan:
    plan = Plan.objects.filter(slug=slug).first()
    if plan is None:
        # The seeded plans were removed (a flushed database): put the defaults back.
        seed_plans(Plan)
        plan = Plan.objects.get(slug=slug)
    return plan


def default_plan() -> Plan:
    return plan_by_slug(settings.ATELIER_DEFAULT_PLAN)


def free_plan() -> Plan:
    return plan_by_slug("free")


def account_for(user: User) -> BillingAccount:
    """The user's account, created on first use, with any due plan change applied."""
    account = BillingAccount.objects.filter(user=user).select_related("plan", "scheduled_plan").first()
    if account is None:
        try:
            with transaction.atomic():
                account = BillingAccount.objects.create(user=user, plan=default_plan())
        except IntegrityError:
            account = BillingAccount.objects.select_related("plan").get(user=user)
    return bring_up_to_date(account)


def bring_up_to_date(account: BillingAccount) -> BillingAccount:
    """Apply a plan change whose period has ended and this month's grant, if either is due."""
    apply_due_changes(account)
    grant_unsubscribed_monthly(account)
    return account


def effective_plan(account: BillingAccount) -> Plan:
    return free_plan() if account.is_delinquent else account.plan


def apply_due_changes(account: BillingAccount, now: datetime | None = None) -> None:
    """A scheduled downgrade or cancellation takes effect once its period has ended."""
    now = now or timezone.now()
    if account.scheduled_plan_id is None or account.current_period_end is None:
        return
    if account.current_period_end > now:
        return
    changed = BillingAccount.objects.filter(
        pk=account.pk, scheduled_plan_id=account.scheduled_plan_id
    ).update(plan_id=account.scheduled_plan_id, scheduled_plan=None)
    account.refresh_from_db()
    if changed and account.plan.slug == "free":
        grant_unsubscribed_monthly(account)


def period_key(now: datetime | None = None) -> str:
    return f"{(now or timezone.now()):%Y-%m}"


def grant_unsubscribed_monthly(account: BillingAccount) -> None:
    """Accounts without a paid subscription get their plan's grant once each calendar month, where
    required once the owner has verified an email address (the next look at the account grants)."""
    if account.stripe_subscription_id and account.subscription_status:
        return
    month = period_key()
    if account.granted_month == month or grant_waits_for_email(account):
        return
    # The ledger's unique reference is what makes this exactly once; the field saves the lookup.
    start_period(account, account.plan.monthly_credits * 100, reference=f"monthly:{month}")
    BillingAccount.objects.filter(pk=account.pk).update(granted_month=month)
    account.granted_month = month


def grant_waits_for_email(account: BillingAccount) -> bool:
    """This month's grant is due but held back until the owner verifies an email address."""
    if not settings.ATELIER_CREDITS_NEED_VERIFIED_EMAIL or account.granted_month == period_key():
        return False
    subscribed = bool(account.stripe_subscription_id and account.subscription_status)
    return not subscribed and not has_verified_email(user_id=account.user_id)


def start_period(account: BillingAccount, credits: int, *, reference: str, note: str = "") -> bool:
    """Unused credits of the last period expire and the new grant arrives; once per reference."""
    return _grant(account, credits, reference=reference, note=note or "monthly grant", expire_unused=True)


def grant_credits(account: BillingAccount, credits: int, *, reference: str, note: str) -> bool:
    """Add credits on top of the balance (an upgrade mid-period); once per reference."""
    if credits <= 0:
        return False
    return _grant(account, credits, reference=reference, note=note, expire_unused=False)


def _grant(account: BillingAccount, credits: int, *, reference: str, note: str, expire_unused: bool) -> bool:
    try:
        with transaction.atomic():
            # The entry goes first: its unique reference is what makes a repeated grant a no-op.
            CreditEntry.objects.create(
                account=account,
                kind=EntryKind.GRANT,
                amount=credits,
                credits=credits,
                reference=reference,
                note=note,
            )
            expired = 0
            if expire_unused:
                account.refresh_from_db(fields=["balance"])
                expired = account.balance
            if expired:
                CreditEntry.objects.create(
                    account=account,
                    kind=EntryKind.EXPIRE,
                    amount=-expired,
                    credits=expired,
                    reference=f"expire:{reference}",
                    note="unused credits expired",
                )
            # Relative updates: a hold taken meanwhile by a concurrent submission is kept.
            BillingAccount.objects.filter(pk=account.pk).update(
                balance=F("balance") - expired + credits,
                period_credits=credits if expire_unused else F("period_credits") + credits,
            )
    except IntegrityError:
        return False
    account.refresh_from_db(fields=["balance", "held", "period_credits"])
    return True


@cache
def hold_sql() -> tuple[str, str]:
    """(take the credits if the balance allows, record the hold), as one statement on PostgreSQL."""
    accounts, entries = sql.table(BillingAccount), sql.table(CreditEntry)
    take = (
        f"UPDATE {accounts} SET balance = balance - %s, held = held + %s "  # noqa: S608 (names from the models)
        "WHERE id = %s AND balance >= %s"
    )
    columns = "account_id, kind, amount, credits, generation_id, reference, note, created_at"
    if connection.vendor == "postgresql":
        return (
            f"WITH taken AS ({take} RETURNING id) INSERT INTO {entries} ({columns}) "  # noqa: S608
            "SELECT id, %s, %s, %s, %s, '', '', %s FROM taken"
        ), ""
    return take, f"INSERT INTO {entries} ({columns}) VALUES (%s, %s, %s, %s, %s, '', '', %s)"  # noqa: S608


def hold_credits(*, account: BillingAccount, credits: int, generation_id: uuid.UUID) -> None:
    """Reserve credits for a generation, or raise InsufficientCredits. Call inside its transaction."""
    if credits <= 0:
        return
    # Every submission runs this: SQL rather than the ORM (core/sql.py says why).
    take, record = hold_sql()
    generation = CreditEntry._meta.get_field("generation").target_field
    entry = [
        str(EntryKind.HOLD),
        -credits,
        credits,
        generation.get_db_prep_value(generation_id, connection),
        connection.ops.adapt_datetimefield_value(timezone.now()),
    ]
    if record:
        taken = sql.execute(take, [credits, credits, account.pk, credits]) == 1
        if taken:
            sql.execute(record, [account.pk, *entry])
    else:
        taken = sql.execute(take, [credits, credits, account.pk, credits, *entry]) == 1
    if not taken:
        account.refresh_from_db(fields=["balance"])
        raise InsufficientCredits(credits, account.balance)


def settle_credits(*, user_id: int, generation_id: uuid.UUID, held: int, captured: int) -> None:
    """Capture what finished images cost and release the rest. Call inside the transaction that
    moves the generation to its terminal state, which happens exactly once."""
    settle_credits_many([Settlement(user_id, generation_id, held, captured)])


class Settlement(NamedTuple):
    user_id: int
    generation_id: uuid.UUID
    held: int
    captured: int


def settle_credits_many(settlements: Sequence[Settlement]) -> None:
    """`settle_credits` for a batch of generations that reach their terminal state in one
    transaction: one account update per user, one ledger insert for them all."""
    moves: dict[int, list[tuple[uuid.UUID, int, int]]] = {}  # user -> (generation, captured, released)
    for user_id, generation_id, held, captured in settlements:
        if held > 0:
            captured = max(0, min(captured, held))
            moves.setdefault(user_id, []).append((generation_id, captured, held - captured))
    entries = []
    # Every finished job runs this: SQL rather than the ORM (core/sql.py says why).
    for user_id, settled in moves.items():
        held = sum(captured + released for _, captured, released in settled)
        row = sql.fetch_one(settle_sql(), [held, sum(released for *_, released in settled), user_id])
        if row is None:
            raise BillingAccount.DoesNotExist(f"no billing account for user {user_id}")
        for generation_id, captured, released in settled:
            kinds = ((EntryKind.CAPTURE, 0, captured), (EntryKind.RELEASE, released, released))
            entries += [
                CreditEntry(
                    account_id=row[0], kind=kind, amount=amount, credits=credits, generation_id=generation_id
                )
                for kind, amount, credits in kinds
                if credits
            ]
    sql.insert_many(entries)


@cache
def settle_sql() -> str:
    accounts = sql.table(BillingAccount)
    return (
        f"UPDATE {accounts} SET held = held - %s, balance = balance + %s "  # noqa: S608 (names from the models)
        "WHERE user_id = %s RETURNING id"
    )


SETTLEMENT_KINDS = (EntryKind.HOLD, EntryKind.CAPTURE, EntryKind.RELEASE)


def archive_credit_round(generation_id: uuid.UUID) -> int:
    """Set the ledger entries of a generation's finished attempt aside; returns that round's number.

    The ledger allows one hold, capture and release per generation, so a generation that runs again
    would collide with its own history when it is held and settled again. The earlier round keeps its
    amounts and names the generation in its reference; the new round uses the ordinary entries.
    """
    settled = CreditEntry.objects.filter(generation_id=generation_id, kind__in=SETTLEMENT_KINDS)
    if not settled.exists():
        return 0
    prefix = f"generation:{generation_id}:round:"
    earlier = CreditEntry.objects.filter(reference__startswith=prefix).values("reference").distinct().count()
    round_number = earlier + 1
    settled.update(generation=None, reference=f"{prefix}{round_number}", note=f"before retry {round_number}")
    return round_number

"""The conditional credit hold itself under true concurrency on PostgreSQL.

Submissions lock the account row first (generations/caps.py), which serializes them; a test through
the API therefore proves only the lock. Here many threads, each with its own database connection
and transaction, run `hold_credits` at once on one account without that lock, so the conditional
UPDATE (`... WHERE balance >= cost`) is all that stands between them and an overspent balance.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection, transaction

from accounts.models import User
from billing.credits import InsufficientCredits, account_for, hold_credits
from billing.models import BillingAccount, CreditEntry, EntryKind
from tests.factories import queued_generation

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite runs one writer at a time"),
]

THREADS = 30
COST = 3  # hundredths
BALANCE = 10 * COST + 2  # room for ten holds, and a remainder too small for an eleventh


def test_concurrent_holds_take_exactly_what_the_balance_allows() -> None:
    user = User.objects.create_user("spender", password="x")
    account = account_for(user)
    BillingAccount.objects.filter(pk=account.pk).update(balance=BALANCE, held=0)
    generations = [queued_generation(user).id for _ in range(THREADS)]
    barrier = threading.Barrier(THREADS)
    outcomes: dict[uuid.UUID, str] = {}

    def spend(generation_id: uuid.UUID) -> None:
        try:
            with transaction.atomic():
                stale = BillingAccount.objects.get(pk=account.pk)  # everyone sees the full balance
                barrier.wait(timeout=30)
                try:
                    hold_credits(account=stale, credits=COST, generation_id=generation_id)
                    outcomes[generation_id] = "held"
                except InsufficientCredits:
                    outcomes[generation_id] = "insufficient"
        except Exception as exc:  # an overspend the database refused is a failure too
            outcomes[generation_id] = f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()

    threads = [threading.Thread(target=spend, args=(g,)) for g in generations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(set(outcomes.values())) == ["held", "insufficient"], outcomes
    held = [g for g, outcome in outcomes.items() if outcome == "held"]
    assert len(held) == BALANCE // COST
    account.refresh_from_db()
    assert (account.balance, account.held) == (BALANCE % COST, len(held) * COST)
    entries = CreditEntry.objects.filter(account=account, kind=EntryKind.HOLD)
    assert sorted(entries.values_list("generation_id", flat=True)) == sorted(held)
    assert {entry.credits for entry in entries} == {COST}

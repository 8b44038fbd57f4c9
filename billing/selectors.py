from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from billing.models import BillingAccount, CreditEntry, EntryKind


def current_period_entries(account: BillingAccount, limit: int = 200) -> QuerySet[CreditEntry]:
    """Ledger entries since the latest grant (the start of the current period)."""
    latest = (
        CreditEntry.objects.filter(account=account, kind=EntryKind.GRANT, reference__gt="")
        .order_by("-created_at")
        .first()
    )
    since = latest.created_at if latest else timezone.now() - timedelta(days=31)
    return (
        CreditEntry.objects.filter(account=account, created_at__gte=since)
        .select_related("generation")
        .order_by("-created_at", "-id")[:limit]
    )

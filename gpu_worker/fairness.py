"""Fair ordering inside one batch: who gets their finished images first."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from django.db.models import Count
from django.utils import timezone

from generations.models import Generation, GenerationStatus

T = TypeVar("T")


def lightest_users_first(finished: list[tuple[Generation, T]]) -> list[tuple[Generation, T]]:
    """Jobs of one batch are rendered together; the users who have had the fewest images lately
    get theirs first, so sharing a batch with a heavy user never puts a light one behind."""
    if len({job.user_id for job, _ in finished}) < 2:
        return finished
    since = timezone.now() - timedelta(hours=1)
    served = dict(
        Generation.objects.filter(
            user_id__in={job.user_id for job, _ in finished},
            status=GenerationStatus.SUCCEEDED,
            finished_at__gte=since,
        )
        .values_list("user_id")
        .annotate(count=Count("id"))
        .values_list("user_id", "count")
    )
    return sorted(finished, key=lambda item: served.get(item[0].user_id, 0))

"""Staff operations on generations from the admin: retrying dead letters, reordering a lane."""

from __future__ import annotations

from django.db import transaction

from billing.credits import account_for, hold_credits
from billing.models import CreditEntry, EntryKind
from generations import events, queues
from generations.models import Generation, GenerationStatus
from generations.scheduling import lock_plan, release_pending

SETTLEMENT_KINDS = (EntryKind.HOLD, EntryKind.CAPTURE, EntryKind.RELEASE)


def archive_credit_round(generation: Generation) -> int:
    """Set the ledger entries of the generation's finished attempt aside; returns that round's number.

    The ledger allows one hold, capture and release per generation, so a generation that runs again
    would collide with its own history when it is held and settled again. The earlier round keeps its
    amounts and names the generation in its reference; the new round uses the ordinary entries.
    """
    settled = CreditEntry.objects.filter(generation_id=generation.pk, kind__in=SETTLEMENT_KINDS)
    if not settled.exists():
        return 0
    prefix = f"generation:{generation.pk}:round:"
    earlier = CreditEntry.objects.filter(reference__startswith=prefix).values("reference").distinct().count()
    round_number = earlier + 1
    settled.update(generation=None, reference=f"{prefix}{round_number}", note=f"before retry {round_number}")
    return round_number


def retry_failed_generation(*, generation: Generation) -> bool:
    """Put a failed generation back in line as pending, its credits held again, and let the user's
    cap decide when it enters RQ. False when it is not failed (any more).

    Raises ``InsufficientCredits``, changing nothing, when the owner cannot cover it again.
    """
    account = account_for(generation.user)
    with transaction.atomic():
        # Like every change to which jobs a user has waiting: their billing row lock first.
        lock_plan(generation.user_id)
        changed = Generation.objects.filter(pk=generation.pk, status=GenerationStatus.FAILED).update(
            status=GenerationStatus.PENDING,
            attempts=0,
            retry_at=None,
            error_code="",
            error_message="",
            finished_at=None,
            started_at=None,
            cancel_requested_at=None,
            run_seconds=None,
            worker_name="",
            step=0,
        )
        if changed != 1:
            return False
        generation.refresh_from_db()
        archive_credit_round(generation)
        hold_credits(account=account, credits=generation.credits_held, generation_id=generation.pk)
        release_pending(generation.user_id)
        generation.refresh_from_db()
        if generation.status == GenerationStatus.PENDING:
            # Released jobs are announced by the release itself; a held-back one is announced here.
            events.publish_on_commit(generation, "generation.queued")
    return True


def move_generation_to_front(*, generation: Generation) -> bool:
    """Make a queued generation the next job of its lane. False when it is not queued."""
    if generation.status != GenerationStatus.QUEUED:
        return False
    queues.move_to_front(generation)
    return True

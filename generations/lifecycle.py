"""Every change of a generation's status, and the only code that writes it (CONVENTIONS.md 11).

A transition is one function: a conditional UPDATE that names the status it leaves, so that a job
delivered twice, a second click or a lost worker's late finish changes nothing; the credit
settlement that goes with it, in the same transaction; and its event, sent once that transaction
commits (the row is the truth, the push a hint); its webhook deliveries are written in that
transaction, an outbox that commits or rolls back with the state. tests/test_single_writer.py
fails when any other module writes ``Generation.status``.

    pending  -- release ----------> queued     a cap frees up (a job ended, the dispatcher's sweep)
    queued   -- claim ------------> running    the worker (a job, or the mates of its batch)
    running  -- succeed ----------> succeeded  the worker: images stored, credits captured
    running  -- fail -------------> failed     the worker: an error with a code
    running  -- cancel_running ---> canceled   the worker, at the step after the user asked
    running  -- retry_later ------> pending    the worker: a transient error, with a backoff
    running  -- requeue_lost -----> queued     the dispatcher: the worker stopped beating
    running  -- fail_lost --------> failed     the dispatcher: lost too many times
    pending, queued -- cancel ----> canceled   the API (a running job is asked to stop instead)
    failed   -- retry_failed -----> pending    staff, with the credits held again
    queued   -- move_to_front ----> queued     staff: the next job of its lane (RQ only)
    queued   -- hold_back --------> pending    its owner put another first (generations/ordering.py)
    queued   -- serve_from_cache -> succeeded  the submission: an identical generation finished
                                               (the result cache); the row was never enqueued

Creating the row (status pending or queued, chosen by `caps.admission`) is the submission's,
not a change of status. The worker passes its own ``publish`` so that its events leave in order
with its progress events; every other caller's go through the process's shared publisher
(`events.announce`).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing.credits import account_for, archive_credit_round, hold_credits, settle_credits
from core import sql
from core.errors import ApiError
from core.sql import hint_transaction
from generations import caps, events, queues
from generations.models import Generation, GenerationStatus, Image
from generations.positions import eta_seconds, queue_position, seconds_per_position
from generations.selectors import image_resource
from generations.storage import sync_visibility

log = logging.getLogger(__name__)

# publish(user_id, event): a worker's own publisher (see the module docstring).
Publish = events.Push


def announce(generation: Generation, event_type: str, publish: Publish | None = None, **extra: Any) -> None:
    """Write the event's webhook deliveries in the surrounding transaction; push it to sockets
    once that commits."""
    events.announce(generation, event_type, publish, **extra)


def settle(generation: Generation, *, finished_images: int = 0) -> None:
    """A generation just reached its terminal state (inside that transaction): capture what its
    finished images cost, release the rest, and let the user's next pending job take its place."""
    settle_credits(
        user_id=generation.user_id,
        generation_id=generation.id,
        held=generation.credits_held,
        captured=generation.credits_per_image * finished_images,
    )
    release_pending(generation.user_id)


def release(ids: list[Any], now: datetime) -> int:
    """pending -> queued for these ids (the caller holds their user's lock), enqueued after commit."""
    if not ids:
        return 0
    Generation.objects.filter(id__in=ids, status=GenerationStatus.PENDING).update(
        status=GenerationStatus.QUEUED, lane_entered_at=now, retry_at=None
    )
    queued = Generation.objects.filter(id__in=ids, status=GenerationStatus.QUEUED)
    released = list(queued.order_by("lane_entered_at", "created_at"))
    if released:
        # They all just entered the back of their lane: one count gives every position.
        first = released[0]
        base = queue_position(first) or 1
        pace = seconds_per_position(first.pool)
        for offset, generation in enumerate(released):
            if generation.queue_name == first.queue_name:
                position: int | None = base + offset
                eta: int | None = math.ceil((base + offset) * pace)
            else:
                position = queue_position(generation)
                eta = eta_seconds(generation, position)
            announce(generation, "generation.queued", queue_position=position, eta_seconds=eta)
    queues.enqueue_after_commit(released)
    return len(released)


def release_pending(user_id: int, now: datetime | None = None) -> int:
    """Move the user's oldest pending (non-relax, due) jobs into RQ while they are under their cap."""
    now = now or timezone.now()
    with transaction.atomic():
        return release(caps.releasable(user_id, now), now)


# The worker's transitions: queued -> running -> a terminal state, or back to pending.


def claim(generation: Generation, *, worker_name: str, publish: Publish | None = None) -> bool:
    """queued -> running for this worker; False when someone else has it or it was canceled."""
    return bool(claim_many([generation], worker_name=worker_name, publish=publish))


def claim_id(generation_id: Any, *, worker_name: str, publish: Publish | None = None) -> Generation | None:
    """``claim`` by id: the row read by the statement that claims it (a worker taking a job off its
    queue has only the id); None when it is gone, someone else has it or it was canceled."""
    with hint_transaction():
        generation = sql.update_returning_rows(
            Generation, running(worker_name, timezone.now()), generation_id, status=GenerationStatus.QUEUED
        )
        if generation is not None:
            announce(generation, "generation.started", publish)
    return generation


def running(worker_name: str, now: datetime) -> dict[str, Any]:
    """What a claim writes."""
    return {"status": GenerationStatus.RUNNING, "worker_name": worker_name, "started_at": now, "step": 0}


def claim_many(
    generations: list[Generation], *, worker_name: str, publish: Publish | None = None
) -> list[Generation]:
    """queued -> running for this worker, a batch in one statement; those it got. The commit does
    not wait for the disk: a claim lost in a database crash leaves the row queued (to run again)."""
    if not generations:
        return []
    now = timezone.now()
    with hint_transaction():
        got = sql.update_returning(
            Generation, running(worker_name, now), [g.pk for g in generations], status=GenerationStatus.QUEUED
        )
        claimed = [g for g in generations if sql.db_pk(g) in got]
        for generation in claimed:
            generation.status, generation.started_at = GenerationStatus.RUNNING, now
            generation.worker_name, generation.step = worker_name, 0
            announce(generation, "generation.started", publish)
    return claimed


def finish(
    generation: Generation, status: str, *, worker_name: str, finished_images: int = 0, **fields: Any
) -> bool:
    """running -> terminal exactly once, settling the credits in the same transaction. Only the
    worker that claimed it may finish it: a job re-queued after its worker was presumed lost
    belongs to the next worker."""
    now = timezone.now()
    with transaction.atomic():
        run_seconds = (now - generation.started_at).total_seconds() if generation.started_at else None
        changed = Generation.objects.filter(
            pk=generation.pk, status=GenerationStatus.RUNNING, worker_name=worker_name
        ).update(status=status, finished_at=now, run_seconds=run_seconds, **fields)
        if changed != 1:
            return False
        settle(generation, finished_images=finished_images)
    generation.status, generation.finished_at, generation.run_seconds = status, now, run_seconds
    for key, value in fields.items():
        setattr(generation, key, value)
    return True


def serve_from_cache(generation: Generation, source_images: list[Image]) -> bool:
    """queued -> succeeded at once, in the submission's transaction, with new image rows that
    point at the files of an identical finished generation (content-addressed: a file stays while
    any image uses it). Its (reduced) price is captured; its event says ``cached``."""
    now = timezone.now()
    with transaction.atomic():
        changed = Generation.objects.filter(pk=generation.pk, status=GenerationStatus.QUEUED).update(
            status=GenerationStatus.SUCCEEDED,
            cached=True,
            started_at=now,
            finished_at=now,
            run_seconds=0.0,
            step=generation.steps,
            timings={"cached": True},
        )
        if changed != 1:
            return False
        generation.refresh_from_db()
        images = [image.copy_for(generation) for image in source_images]
        Image.objects.bulk_create(images)
        settle(generation, finished_images=len(images))
        resources = [image_resource(image) for image in images]
        announce(generation, "generation.succeeded", images=resources, cached=True)
    try:
        sync_visibility(images)
    except Exception:  # as in `succeed`: the files stay as they were until the next sync
        log.exception("could not sync the visibility of the images of %s", generation.id)
    return True


def fail(
    generation: Generation, code: str, message: str, *, worker_name: str, publish: Publish | None = None
) -> bool:
    """running -> failed with an error code; its credits released."""
    with transaction.atomic():
        if not finish(
            generation,
            GenerationStatus.FAILED,
            worker_name=worker_name,
            error_code=code,
            error_message=message,
        ):
            return False
        announce(generation, "generation.failed", publish, error={"code": code, "message": message})
    return True


def cancel_running(generation: Generation, *, worker_name: str, publish: Publish | None = None) -> bool:
    """running -> canceled, by the worker that saw the user's cancel flag; its credits released."""
    with transaction.atomic():
        if not finish(
            generation, GenerationStatus.CANCELED, worker_name=worker_name, error_code="", error_message=""
        ):
            return False
        announce(generation, "generation.canceled", publish)
    return True


def retry_later(
    generation: Generation, error: Exception, *, worker_name: str, publish: Publish | None = None
) -> str:
    """running -> pending with a backoff (the dispatcher releases it when it is due), or failed
    when it has had its tries. Returns the status it moved to, or "" when it was not this
    worker's to move."""
    if generation.attempts + 1 >= settings.ATELIER_MAX_ATTEMPTS:
        message = f"Failed {generation.attempts + 1} times: {error}"
        failed = fail(generation, "retries_exhausted", message, worker_name=worker_name, publish=publish)
        return GenerationStatus.FAILED if failed else ""
    delay = settings.ATELIER_RETRY_BASE_SECONDS * 2**generation.attempts
    with transaction.atomic():
        changed = Generation.objects.filter(
            pk=generation.pk, status=GenerationStatus.RUNNING, worker_name=worker_name
        ).update(
            status=GenerationStatus.PENDING,
            worker_name="",
            step=0,
            attempts=F("attempts") + 1,
            retry_at=timezone.now() + timedelta(seconds=delay),
        )
        if not changed:
            return ""
        generation.refresh_from_db()
        release_pending(generation.user_id)
        announce(generation, "generation.queued", publish, retry_in=delay)
    return GenerationStatus.PENDING


# The dispatcher's transitions: a running job whose worker stopped beating.


def take_from_lost_worker(generation: Generation, **fields: Any) -> bool:
    """running -> something else, only if the same (lost) worker still holds it."""
    changed = Generation.objects.filter(
        pk=generation.pk, status=GenerationStatus.RUNNING, worker_name=generation.worker_name
    ).update(**fields)
    if changed:
        generation.refresh_from_db()
    return bool(changed)


def requeue_lost(generation: Generation) -> bool:
    """running -> queued again (a new attempt, a new RQ job) after its worker was lost."""
    with transaction.atomic():
        fields = {"worker_name": "", "step": 0, "started_at": None, "attempts": F("attempts") + 1}
        if not take_from_lost_worker(generation, status=GenerationStatus.QUEUED, **fields):
            return False
        announce(generation, "generation.queued")
        queues.enqueue_after_commit([generation])
    return True


def fail_lost(generation: Generation) -> bool:
    """running -> failed: its worker was lost once too often. Its credits are released."""
    message = "The worker running this generation was lost, too many times."
    with transaction.atomic():
        fields = {"finished_at": timezone.now(), "error_code": "worker_lost", "error_message": message}
        if not take_from_lost_worker(generation, status=GenerationStatus.FAILED, **fields):
            return False
        settle(generation)
        error = {"code": generation.error_code, "message": generation.error_message}
        announce(generation, "generation.failed", error=error)
    return True


# The user's and staff's transitions.


def cancel(generation: Generation) -> Generation:
    """pending/queued -> canceled at once, credits released; a running job is asked to stop at its
    next step (the worker then calls `cancel_running`). ``409 generation_finished`` otherwise."""
    now = timezone.now()
    with transaction.atomic():
        waiting = (GenerationStatus.PENDING, GenerationStatus.QUEUED)
        changed = Generation.objects.filter(pk=generation.pk, status__in=waiting).update(
            status=GenerationStatus.CANCELED, finished_at=now, cancel_requested_at=now
        )
        if changed:
            generation.refresh_from_db()
            settle(generation)
            announce(generation, "generation.canceled")
            transaction.on_commit(lambda: queues.dequeue(generation))
            return generation
        changed = Generation.objects.filter(pk=generation.pk, status=GenerationStatus.RUNNING).update(
            cancel_requested_at=now
        )
        generation.refresh_from_db()
    if changed:
        queues.request_cancel(generation)
        return generation
    raise ApiError("generation_finished", f"The generation has already {generation.status}.")


def retry_failed(generation: Generation) -> bool:
    """failed -> pending, as if new, its credits held again; the user's cap decides when it enters
    RQ. False when it is not failed (any more). Raises ``InsufficientCredits``, changing nothing,
    when the owner cannot cover it again."""
    account = account_for(generation.user)
    with transaction.atomic():
        # Like every change to which jobs a user has waiting: their billing row lock first.
        caps.lock_plan(generation.user_id)
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
        archive_credit_round(generation.pk)
        hold_credits(account=account, credits=generation.credits_held, generation_id=generation.pk)
        release_pending(generation.user_id)
        generation.refresh_from_db()
        if generation.status == GenerationStatus.PENDING:
            # Released jobs are announced by the release itself; a held-back one is announced here.
            announce(generation, "generation.queued")
    return True


def move_to_front(generation: Generation) -> bool:
    """Make a queued generation the next job of its lane. False when it is not queued."""
    if generation.status == GenerationStatus.QUEUED:
        queues.move_to_front(generation)
    return generation.status == GenerationStatus.QUEUED


def hold_back(generation: Generation) -> bool:
    """queued -> pending, out of RQ: its owner's prompt put in front took its place (the caller
    holds the owner's lock and releases that one). False when it no longer waits in RQ."""
    waiting = Generation.objects.filter(pk=generation.pk, status=GenerationStatus.QUEUED)
    if waiting.update(status=GenerationStatus.PENDING) != 1:
        return False
    generation.status = GenerationStatus.PENDING
    transaction.on_commit(lambda: queues.dequeue(generation))
    announce(generation, "generation.queued")
    return True

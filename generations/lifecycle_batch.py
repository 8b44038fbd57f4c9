"""A generation's success: running -> succeeded, for one job or a whole batch in one transaction.

Only for the worker that claimed the row, exactly once; credits captured for the finished images
(or ``units``: a workflow is one) and the rest released; Image rows and webhook deliveries written
in that transaction; events pushed after it commits. A batch takes one statement of each kind
instead of one transaction of five or six statements per job: one conditional UPDATE (each row
with its own timings), one account update per user and one ledger insert, one image insert
(hand-written: the ORM's insert compiler took longer than the rest), each user's endpoints read
once. A trivial job's finish was most of a worker's time per job (docs/benchmarks.md,
bench/latency.py).

This module is lifecycle.py's sibling, the only other writer of ``Generation.status``
(tests/test_single_writer.py): lifecycle.py is at its size limit.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from django.db import transaction
from django.utils import timezone

from billing.credits import Settlement, settle_credits_many
from core import memo, sql
from generations import lifecycle
from generations.models import Generation, GenerationStatus, Image
from generations.selectors import image_resource, image_url_templates
from generations.storage import sync_visibility

log = logging.getLogger(__name__)


class Finished(NamedTuple):
    """A job of the batch, its stored (not yet saved) Image rows and its phase timings; ``units``,
    what its credits are captured for (its images when None); ``fields``, more columns written
    with the status (a workflow's outputs; every job of one call names the same ones)."""

    generation: Generation
    images: list[Image]
    timings: dict[str, Any]
    units: int | None = None
    fields: dict[str, Any] | None = None


def succeed_many(
    finished: list[Finished],
    *,
    worker_name: str,
    batch_size: int,
    memory_mode: str,
    publish: lifecycle.Publish | None = None,
) -> list[Generation]:
    """running -> succeeded for these jobs, in one transaction; those this worker still held (a
    job canceled meanwhile, or taken over after this worker was presumed lost, is left alone)."""
    if not finished:
        return []
    now = timezone.now()
    own = {
        job.generation.pk: {
            "run_seconds": (now - job.generation.started_at).total_seconds()
            if job.generation.started_at
            else None,
            "step": job.generation.total_steps or job.generation.steps,
            "total_steps": job.generation.total_steps or job.generation.steps,  # the last step's
            "timings": job.timings,
            **(job.fields or {}),
        }
        for job in finished
    }
    changes = {
        "status": GenerationStatus.SUCCEEDED,
        "finished_at": now,
        "batch_size": batch_size,
        "memory_mode": memory_mode,
    }
    with transaction.atomic(), memo.scope():
        got = sql.update_rows(
            Generation, changes, own, status=GenerationStatus.RUNNING, worker_name=worker_name
        )
        done = [job for job in finished if sql.db_pk(job.generation) in got]
        for generation in (job.generation for job in done):
            generation.status, generation.finished_at = GenerationStatus.SUCCEEDED, now
            generation.batch_size, generation.memory_mode = batch_size, memory_mode
            for name, value in own[generation.pk].items():
                setattr(generation, name, value)
        settle_credits_many([settlement(job) for job in done])
        for user_id in dict.fromkeys(job.generation.user_id for job in done):
            lifecycle.release_pending(user_id, now)
        images = [image for job in done for image in job.images]
        for image in images:
            image.inherit_from_generation()  # what Image.objects.bulk_create does first
        sql.insert_many(images)  # the ORM's insert compiler took longer than the rest of the batch
        templates = image_url_templates()  # reverse() once a batch: it was a quarter of its finish
        for job in done:
            resources = [image_resource(image, templates=templates) for image in job.images]
            lifecycle.announce(job.generation, "generation.succeeded", publish, images=resources)
    try:
        sync_visibility(images)  # published from the start (a Free plan's images): public objects on S3
    except Exception:
        log.exception("could not make the images of a batch of %d public", len(done))
    return [job.generation for job in done]


def settlement(job: Finished) -> Settlement:
    generation = job.generation
    units = len(job.images) if job.units is None else job.units
    return Settlement(
        generation.user_id, generation.id, generation.credits_held, generation.credits_per_image * units
    )

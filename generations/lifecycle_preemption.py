"""The preemption transition, beside `generations.lifecycle` (which is at its size limit) and
under the same rule: the only other module that writes ``Generation.status``
(tests/test_single_writer.py names both).

    running  -- preempt ----------> queued     the worker, at the step after the dispatcher asked
                                               (a priority job waited: generations/preemption.py)

The job keeps its credit hold (nothing is held again; it is captured once, when it finishes),
goes back to the front of its own lane with a fresh RQ job id (`queues.job_id_for` counts its
preemptions) and its owner hears ``generation.preempted`` with the step it stopped at.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from generations import queues
from generations.lifecycle import Publish, announce
from generations.models import Generation, GenerationStatus
from generations.positions import eta_seconds, queue_position


def preempt(
    generation: Generation,
    *,
    worker_name: str,
    step: int,
    resumable: bool,
    publish: Publish | None = None,
) -> bool:
    """running -> queued, by the worker that stopped it after ``step`` steps; ``resumable``: its
    latents and sampler state were saved and the next run continues from there (else it restarts).
    False when it was not this worker's to move (canceled, lost and re-queued meanwhile)."""
    kept = step if resumable else 0
    with transaction.atomic():
        changed = Generation.objects.filter(
            pk=generation.pk, status=GenerationStatus.RUNNING, worker_name=worker_name
        ).update(
            status=GenerationStatus.QUEUED,
            worker_name="",
            started_at=None,
            step=kept,
            preemptions=F("preemptions") + 1,
        )
        if changed != 1:
            return False
        generation.refresh_from_db()
        position = queue_position(generation)
        announce(
            generation,
            "generation.preempted",
            publish,
            stopped_at_step=step,
            resumes_at_step=kept + 1,
            queue_position=position,
            eta_seconds=eta_seconds(generation, position),
        )
        queues.enqueue_after_commit([generation], at_front=True)
    return True

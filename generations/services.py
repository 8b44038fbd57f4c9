"""Writes: submitting and canceling generations, storing uploads."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from generations import events, queues
from generations.errors import ApiError
from generations.models import Generation, GenerationKind, GenerationStatus, Upload
from generations.storage import save_content
from generations.uploads import clean_image

DEFAULT_LANE = "standard"


@dataclass(frozen=True)
class GenerationSpec:
    model: str
    pool: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int | None
    n: int
    input_upload: Upload | None = None
    strength: float | None = None


def lane_for(user: User) -> str:
    # Plans pick the lane once billing exists; until then everybody shares one.
    return DEFAULT_LANE


def submit_generation(*, user: User, spec: GenerationSpec) -> Generation:
    seed = spec.seed if spec.seed is not None else secrets.randbelow(2**32)
    with transaction.atomic():
        generation = Generation.objects.create(
            user=user,
            status=GenerationStatus.QUEUED,
            kind=GenerationKind.IMG2IMG if spec.input_upload else GenerationKind.TXT2IMG,
            model_name=spec.model,
            pool=spec.pool,
            lane=lane_for(user),
            prompt=spec.prompt,
            negative_prompt=spec.negative_prompt,
            width=spec.width,
            height=spec.height,
            steps=spec.steps,
            guidance=spec.guidance,
            seed=seed,
            n=spec.n,
            input_upload=spec.input_upload,
            strength=spec.strength,
        )
        events.publish_on_commit(generation, "generation.queued")
        transaction.on_commit(lambda: queues.enqueue(generation))
    return generation


def cancel_generation(*, generation: Generation) -> Generation:
    """Cancel a waiting job at once; ask a running one to stop at its next step."""
    now = timezone.now()
    with transaction.atomic():
        waiting = (GenerationStatus.PENDING, GenerationStatus.QUEUED)
        changed = Generation.objects.filter(pk=generation.pk, status__in=waiting).update(
            status=GenerationStatus.CANCELED, finished_at=now, cancel_requested_at=now
        )
        if changed:
            generation.refresh_from_db()
            events.publish_on_commit(generation, "generation.canceled")
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


def upload_create(*, user: User, data: bytes) -> Upload:
    png, width, height = clean_image(data)
    path, digest = save_content("uploads", png, "png")
    return Upload.objects.create(user=user, file=path, width=width, height=height, sha256=digest)

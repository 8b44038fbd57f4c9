"""Dynamic batching: a worker that took a job also takes queued jobs that can share its batch.

Compatible means the same model, kind (txt2img, img2img, inpaint), size, steps, guidance, sampler,
strength and set of LoRAs (with their weights); prompts, negative prompts, seeds, source images and
masks may differ. Mates are taken from the head job's own queue, in queue order, up to the model's
`max_batch` images, for at most `ATELIER_BATCH_WAIT` seconds while other jobs are queued behind the
head (a burst is being submitted); with its queue empty the head runs at once, so a lone job never
waits for mates that are not coming. A batch never delays a higher lane: while any higher lane of
the pool has a job waiting, no mate is added and nobody waits.

A mate is claimed in the database first (`lifecycle.claim`: queued -> running, conditional), then
its RQ job is removed, so a worker that pops that job anyway finds it taken and skips it, and a
worker that dies holding it is found by the reconciler like any other running job.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from generations import lifecycle
from generations.models import Generation, GenerationStatus
from generations.queue_names import queue_name
from generations.queues import job_id_for, queue_key, redis_client

SCAN_DEPTH = 64  # queued jobs looked at per poll
POLL_SECONDS = 0.005


# What the jobs of one batch share: one denoising loop runs them all (see RenderSpec.shared).
BATCH_FIELDS = ("model_name", "kind", "width", "height", "steps", "guidance", "strength", "sampler")


def batch_key(generation: Generation) -> tuple[Any, ...]:
    """The batch fields, and the LoRA set: a batch runs with one set of LoRAs applied."""
    loras = tuple(sorted((str(lora["name"]), float(lora["weight"])) for lora in generation.loras or []))
    return (*(getattr(generation, name) for name in BATCH_FIELDS), loras)


def generation_id_of(job_id: bytes) -> str | None:
    """RQ job ids are ``gen-<uuid>-<attempt>``."""
    text = job_id.decode()
    if not text.startswith("gen-"):
        return None
    return text[4:].rsplit("-", 1)[0]


def higher_lanes_busy(head: Generation) -> bool:
    lanes = list(settings.LANES)
    higher = lanes[: lanes.index(head.lane)] if head.lane in lanes else []
    if not higher:
        return False
    pipe = redis_client().pipeline()
    for lane in higher:
        pipe.llen(queue_key(queue_name(head.pool, lane)))
    return any(pipe.execute())


def take_mates(
    head: Generation, *, max_images: int, worker_name: str, publish: lifecycle.Publish | None = None
) -> list[Generation]:
    """Claim compatible queued jobs for `head`'s batch (see the module docstring)."""
    room = max_images - head.n
    if room <= 0:
        return []
    deadline = time.monotonic() + settings.ATELIER_BATCH_WAIT
    key = batch_key(head)
    waiting = queue_key(head.queue_name)
    client = redis_client()
    mates: list[Generation] = []
    while room > 0 and not higher_lanes_busy(head):
        job_ids = client.lrange(waiting, 0, SCAN_DEPTH - 1)
        if not job_ids:
            break  # nothing queued: no mate to wait for
        order = {gid: i for i, gid in enumerate(filter(None, map(generation_id_of, job_ids)))}
        candidates = Generation.objects.filter(
            pk__in=list(order),
            status=GenerationStatus.QUEUED,
            preemptions=0,  # a preempted job runs alone (it may resume from a saved step)
            n__lte=room,
            **dict(zip(BATCH_FIELDS, key[: len(BATCH_FIELDS)], strict=True)),
        ).select_related("input_upload", "mask_upload")
        chosen = []
        for candidate in sorted(candidates, key=lambda g: order[str(g.id)]):
            if candidate.n <= room and batch_key(candidate) == key:
                chosen.append(candidate)
                room -= candidate.n
        claimed = lifecycle.claim_many(chosen, worker_name=worker_name, publish=publish)
        room += sum(g.n for g in chosen if g not in claimed)  # taken by someone else meanwhile
        drop_rq_jobs(client, waiting, claimed)
        mates += claimed
        if room <= 0 or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    return mates


def drop_rq_jobs(client: Any, key: str, generations: list[Generation]) -> None:
    if not generations:
        return
    pipe = client.pipeline()
    for generation in generations:
        job_id = job_id_for(generation)
        pipe.lrem(key, 1, job_id)
        pipe.delete(f"rq:job:{job_id}")
    pipe.execute()

"""Runs one generation in-process: claim, render with progress, store, finish."""

from __future__ import annotations

import base64
import io
import logging
import os
import socket
import time
from datetime import timedelta
from typing import Any

import torch
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from PIL import Image as PILImage
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.timeouts import JobTimeoutException

from generations import queues
from generations.errors import CATALOGUE
from generations.events import build_event, record_webhooks
from generations.models import Generation, GenerationStatus, Image, Upload
from generations.publisher import EventPublisher
from generations.registry import get_model
from generations.scheduling import release_pending
from generations.selectors import image_resource
from generations.services import settle
from generations.storage import open_content, save_content
from gpu_worker.heartbeat import Heartbeat
from gpu_worker.pipeline import (
    ModelCache,
    RenderCanceled,
    RenderSpec,
    latents_to_preview,
    png_with_parameters,
    render,
    render_trivial,
    webp_thumbnail,
)

log = logging.getLogger(__name__)


# Errors that another try may not hit: memory pressure on the device, a broken connection.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    torch.OutOfMemoryError,
    RedisConnectionError,
    ConnectionError,
)


class GenerationFailed(Exception):
    def __init__(self, code: str, message: str | None = None):
        self.code = code
        self.message = message or CATALOGUE[code][1]
        super().__init__(self.message)


class GenerationRunner:
    def __init__(self, *, device: str = "cpu", name: str | None = None) -> None:
        self.name = name or f"{socket.gethostname()}.{os.getpid()}"
        self.cache = ModelCache(device=device)
        self.publisher = EventPublisher()
        self.progress_interval = settings.ATELIER_PROGRESS_INTERVAL
        self.heartbeat: Heartbeat | None = None

    def preload(self, pools: list[str]) -> None:
        for spec in settings.ATELIER_MODELS.values():
            if spec.pool in pools and spec.family != "noop":
                self.cache.get(spec.path)

    def publish(self, generation: Generation, event_type: str, **extra: Any) -> None:
        event = build_event(generation, event_type, **extra)
        self.publisher.publish(generation.user_id, event)
        record_webhooks(generation.user_id, event, generation)

    def run_one(self, generation_id: str) -> str:
        claimed = Generation.objects.filter(pk=generation_id, status=GenerationStatus.QUEUED).update(
            status=GenerationStatus.RUNNING, started_at=timezone.now(), worker_name=self.name, step=0
        )
        if claimed != 1:
            # Canceled while queued, or delivered twice: the row says someone else owns it.
            return "skipped"
        generation = Generation.objects.get(pk=generation_id)
        self.publish(generation, "generation.started")
        if self.heartbeat is not None:
            self.heartbeat.current_job = generation_id
            self.heartbeat.beat_quietly()
        try:
            images = self.render(generation)
            self.succeed(generation, images)
        except RenderCanceled:
            self.finish(generation, GenerationStatus.CANCELED, "generation.canceled")
        except GenerationFailed as exc:
            self.fail(generation, exc.code, exc.message)
        except JobTimeoutException:
            self.fail(generation, "timeout", "The generation ran longer than its pool's limit.")
        except TRANSIENT_ERRORS as exc:
            log.warning("generation %s hit a transient error: %s", generation_id, exc)
            self.retry_later(generation, exc)
        except Exception as exc:
            log.exception("generation %s failed", generation_id)
            self.fail(generation, "generation_failed", f"The image could not be generated: {exc}")
        finally:
            queues.redis_client().delete(queues.cancel_flag_key(generation_id))
            if self.heartbeat is not None:
                self.heartbeat.current_job = None
        return generation.status

    def render(self, generation: Generation) -> list[PILImage.Image]:
        spec = get_model(generation.model_name)
        if spec is None:
            raise GenerationFailed(
                "model_unavailable", f"The model {generation.model_name!r} is not configured."
            )
        on_step = self.progress_callback(generation)
        if spec.family == "noop":
            return render_trivial(self.render_spec(generation, None), on_step)
        try:
            model = self.cache.get(spec.path)
        except Exception as exc:
            log.exception("could not load %s", spec.path)
            raise GenerationFailed("model_unavailable") from exc
        init_image = load_upload(generation.input_upload)
        render_spec = self.render_spec(generation, init_image)
        render_spec.mask_image = load_upload(generation.mask_upload)
        return render(model, render_spec, on_step)

    def render_spec(self, generation: Generation, init_image: PILImage.Image | None) -> RenderSpec:
        return RenderSpec(
            prompt=generation.prompt,
            negative_prompt=generation.negative_prompt,
            width=generation.width,
            height=generation.height,
            steps=generation.steps,
            guidance=generation.guidance,
            seeds=[generation.seed + i for i in range(generation.n)],
            init_image=init_image,
            strength=generation.strength or 0.6,
        )

    def progress_callback(self, generation: Generation) -> Any:
        generation_id = str(generation.id)
        last_sent = 0.0

        def on_step(step: int, total: int, latents: torch.Tensor) -> bool:
            nonlocal last_sent
            if queues.cancel_requested(generation_id):
                return False
            now = time.monotonic()
            if step < total and now - last_sent < self.progress_interval:
                return True
            last_sent = now
            generation.step, generation.total_steps = step, total
            Generation.objects.filter(
                pk=generation.pk, status=GenerationStatus.RUNNING, worker_name=self.name
            ).update(step=step, total_steps=total)
            preview = "data:image/jpeg;base64," + base64.b64encode(latents_to_preview(latents)).decode()
            self.publish(generation, "generation.progress", preview=preview)
            return True

        return on_step

    def succeed(self, generation: Generation, images: list[PILImage.Image]) -> None:
        rows = []
        for index, picture in enumerate(images):
            seed = generation.seed + index
            original, digest = save_content(
                "images", png_with_parameters(picture, parameters(generation, seed)), "png"
            )
            thumbnail, _ = save_content("thumbnails", webp_thumbnail(picture), "webp")
            rows.append(
                Image(
                    generation=generation,
                    index=index,
                    seed=seed,
                    width=picture.width,
                    height=picture.height,
                    original=original,
                    thumbnail=thumbnail,
                    sha256=digest,
                )
            )
        with transaction.atomic():
            done = generation.total_steps or generation.steps
            if not self.transition(generation, GenerationStatus.SUCCEEDED, images=len(rows), step=done):
                return
            Image.objects.bulk_create(rows)
        self.publish(generation, "generation.succeeded", images=[image_resource(i) for i in rows])

    def retry_later(self, generation: Generation, exc: Exception) -> None:
        """Back to pending with a backoff; the dispatcher releases it when it is due."""
        if generation.attempts + 1 >= settings.ATELIER_MAX_ATTEMPTS:
            self.fail(generation, "retries_exhausted", f"Failed {generation.attempts + 1} times: {exc}")
            return
        delay = settings.ATELIER_RETRY_BASE_SECONDS * 2**generation.attempts
        with transaction.atomic():
            changed = Generation.objects.filter(
                pk=generation.pk, status=GenerationStatus.RUNNING, worker_name=self.name
            ).update(
                status=GenerationStatus.PENDING,
                worker_name="",
                step=0,
                attempts=F("attempts") + 1,
                retry_at=timezone.now() + timedelta(seconds=delay),
            )
            if changed:
                generation.refresh_from_db()
                release_pending(generation.user_id)
        if changed:
            self.publish(generation, "generation.queued", retry_in=delay)

    def fail(self, generation: Generation, code: str, message: str) -> None:
        self.finish(generation, GenerationStatus.FAILED, "generation.failed", code=code, message=message)

    def finish(
        self, generation: Generation, status: str, event_type: str, *, code: str = "", message: str = ""
    ) -> None:
        if not self.transition(generation, status, error_code=code, error_message=message):
            return
        extra = {"error": {"code": code, "message": message}} if code else {}
        self.publish(generation, event_type, **extra)

    def transition(self, generation: Generation, status: str, *, images: int = 0, **fields: Any) -> bool:
        """running -> terminal exactly once, settling the credits in the same transaction."""
        now = timezone.now()
        with transaction.atomic():
            # Only the worker that claimed it may finish it: a job re-queued after its worker was
            # presumed lost belongs to the next worker.
            changed = Generation.objects.filter(
                pk=generation.pk, status=GenerationStatus.RUNNING, worker_name=self.name
            ).update(status=status, finished_at=now, **fields)
            if changed != 1:
                return False
            settle(generation, finished_images=images)
        generation.status, generation.finished_at = status, now
        for key, value in fields.items():
            setattr(generation, key, value)
        return True


def load_upload(upload: Upload | None) -> PILImage.Image | None:
    if upload is None:
        return None
    try:
        data = open_content(upload.file)
    except OSError as exc:
        raise GenerationFailed("input_missing") from exc
    return PILImage.open(io.BytesIO(data)).convert("RGB")


def parameters(generation: Generation, seed: int) -> dict[str, Any]:
    return {
        "prompt": generation.prompt,
        "negative_prompt": generation.negative_prompt,
        "model": generation.model_name,
        "kind": generation.kind,
        "width": generation.width,
        "height": generation.height,
        "steps": generation.steps,
        "guidance": generation.guidance,
        "seed": seed,
        "strength": generation.strength,
        "generation_id": str(generation.id),
    }

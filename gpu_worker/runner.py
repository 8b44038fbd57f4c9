"""Runs one generation in-process: claim, render with progress, store, finish."""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import socket
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import torch
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone
from PIL import Image as PILImage
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from rq.timeouts import JobTimeoutException

from core.errors import CATALOGUE
from core.model_catalog import ModelSpec
from generations import queues
from generations.events import build_event, record_webhooks
from generations.models import Generation, GenerationStatus, Image, Upload
from generations.publisher import EventPublisher
from generations.registry import get_model
from generations.scheduling import release_pending
from generations.selectors import image_resource
from generations.services import settle
from generations.storage import open_content, save_content, sync_visibility
from gpu_worker.affinity import holder_counts
from gpu_worker.batching import claim, take_mates
from gpu_worker.cache import ModelCache
from gpu_worker.finisher import Finisher
from gpu_worker.heartbeat import Heartbeat
from gpu_worker.memory import MemoryBudget
from gpu_worker.pipeline import (
    BatchResult,
    BatchStepCallback,
    LoadedModel,
    RenderSpec,
    UnsupportedSampler,
    latents_to_preview,
    png_with_parameters,
    render_batch,
    render_trivial,
    webp_thumbnail,
)
from gpu_worker.speed import SpeedOptions

log = logging.getLogger(__name__)


# Errors that another try may not hit: a broken connection. (Out-of-memory has its own ladder.)
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    ConnectionError,
)


class GenerationFailed(Exception):
    def __init__(self, code: str, message: str | None = None):
        self.code = code
        self.message = message or CATALOGUE[code][1]
        super().__init__(self.message)


class GenerationRunner:
    def __init__(
        self, *, device: str = "cpu", name: str | None = None, memory_budget: MemoryBudget | None = None
    ) -> None:
        self.name = name or f"{socket.gethostname()}.{os.getpid()}"
        self.cache = ModelCache(
            device=device,
            max_models=settings.ATELIER_HOT_MODELS,
            device_budget=settings.ATELIER_HOT_MB * 2**20 or None,
            max_warm=settings.ATELIER_WARM_MODELS if settings.ATELIER_WARM_MODELS >= 0 else None,
            ram_budget=settings.ATELIER_WARM_MB * 2**20 or None,
        )
        self.publisher = EventPublisher()
        self.progress_interval = settings.ATELIER_PROGRESS_INTERVAL
        self.heartbeat: Heartbeat | None = None
        self.memory_budget = memory_budget
        self.advertised_at = 0.0
        self.current_model: LoadedModel | None = None
        # Set by the worker command: saving overlaps the next batch. In-process callers (tests)
        # leave it None and get every job finished when run_one returns.
        self.finisher: Finisher | None = None
        self.in_flight: set[str] = set()
        self.in_flight_lock = threading.Lock()
        if memory_budget is not None:
            memory_budget.apply(device)

    def preload(self, pools: list[str]) -> None:
        """Load the pool's models that fit in the cache, those fewest other workers hold first, so
        that a fleet spreads its models instead of every worker holding the same ones."""
        specs = [s for s in settings.ATELIER_MODELS.values() if s.pool in pools and s.family != "noop"]
        try:
            held = holder_counts(queues.redis_client(), pools, self.name)
        except RedisError:
            held = Counter()
        chosen = sorted(specs, key=lambda spec: held[spec.path])[: self.cache.max_models]
        for spec in reversed(chosen):  # the least held is loaded last: the most recently used
            self.cache.get(spec.path, self.speed_options(spec), config=spec.config)

    def speed_options(self, spec: ModelSpec) -> SpeedOptions:
        return SpeedOptions.of(spec, compile_backend=settings.ATELIER_COMPILE_BACKEND)

    def publish(self, generation: Generation, event_type: str, **extra: Any) -> None:
        event = build_event(generation, event_type, **extra)
        self.publisher.publish(generation.user_id, event)
        record_webhooks(generation.user_id, event, generation)

    def run_one(self, generation_id: str) -> str:
        """Run this generation, and compatible queued ones with it as one batch."""
        head = Generation.objects.filter(pk=generation_id).first()
        if head is None or not claim(head, self.name):
            # Canceled while queued, or delivered twice: the row says someone else owns it.
            return "skipped"
        spec = get_model(head.model_name)
        jobs = [head]
        if spec is not None and spec.max_batch > 1:
            jobs += take_mates(head, max_images=spec.max_batch, worker_name=self.name)
        for job in jobs:
            self.publish(job, "generation.started")
            log_phase(job, "started", worker=self.name, batch_size=len(jobs), model=job.model_name)
        with self.in_flight_lock:
            self.in_flight.update(str(job.id) for job in jobs)
        self.advertise_jobs()
        handed_over = False
        try:
            handed_over = self.run_batch(jobs)
        finally:
            if not handed_over:
                self.forget(jobs)
        return head.status

    def forget(self, jobs: list[Generation]) -> None:
        """These jobs are done with (finished, failed, canceled or given back). The heartbeat stops
        listing them first: a job still running in the database is then the reconciler's to re-run,
        even if Redis is away right now."""
        with self.in_flight_lock:
            self.in_flight.difference_update(str(job.id) for job in jobs)
        self.advertise_jobs()
        with contextlib.suppress(RedisError):  # the flags expire by themselves
            queues.redis_client().delete(*(queues.cancel_flag_key(str(job.id)) for job in jobs))

    def advertise_jobs(self) -> None:
        if self.heartbeat is not None:
            with self.in_flight_lock:
                self.heartbeat.current_jobs = sorted(self.in_flight)
            self.heartbeat.beat_quietly()

    def run_batch(self, jobs: list[Generation]) -> bool:
        """Render the batch and finish its jobs; True when the finishing was handed to the finisher."""
        clock = time.perf_counter()
        try:
            result, load_seconds = self.render(jobs)
        except GenerationFailed as exc:
            self.fail_all(jobs, exc.code, exc.message)
            return False
        except JobTimeoutException:
            self.fail_all(jobs, "timeout", "The generation ran longer than its pool's limit.")
            return False
        except torch.OutOfMemoryError as exc:
            log.warning("batch of %d ran out of memory on every rung: %s", len(jobs), exc)
            self.fail_all(jobs, "out_of_memory", CATALOGUE["out_of_memory"][1])
            return False
        except TRANSIENT_ERRORS as exc:
            log.warning("batch of %d hit a transient error: %s", len(jobs), exc)
            for job in jobs:
                self.retry_later(job, exc)
            return False
        except Exception as exc:
            log.exception("batch of %d failed", len(jobs))
            self.fail_all(jobs, "generation_failed", f"The image could not be generated: {exc}")
            return False
        denoise = time.perf_counter() - clock - load_seconds
        finished = [
            (job, images) for job, images in zip(jobs, result.images, strict=True) if images is not None
        ]
        if self.finisher is not None:
            self.finisher.submit(self.finish_batch, jobs, finished, result, load_seconds, denoise, clock)
            return True
        self.finish_batch(jobs, finished, result, load_seconds, denoise, clock)
        return True

    def finish_batch(
        self,
        jobs: list[Generation],
        finished: list[tuple[Generation, list[PILImage.Image]]],
        result: BatchResult,
        load_seconds: float,
        denoise: float,
        clock: float,
    ) -> None:
        try:
            for job, images in lightest_users_first(finished):
                timings = {
                    "queue_wait": round(max(0.0, (job.started_at - job.created_at).total_seconds()), 4)
                    if job.started_at
                    else 0.0,
                    "load": round(load_seconds, 4),
                    "denoise": round(denoise, 4),
                    "it_per_s": round(job.total_steps / denoise, 2) if denoise > 0 else None,
                }
                self.succeed(
                    job, images, timings=timings, batch_size=len(jobs), memory_mode=result.memory_mode
                )
            if finished:
                per_job = (time.perf_counter() - clock) / len(finished)
                with contextlib.suppress(RedisError):
                    queues.record_duration(jobs[0].pool, per_job, at=time.time())
        finally:
            self.forget(jobs)

    def fail_all(self, jobs: list[Generation], code: str, message: str) -> None:
        for job in jobs:
            self.fail(job, code, message)

    def render(self, jobs: list[Generation]) -> tuple[BatchResult, float]:
        """Denoise the batch; returns the images per job (None for a job that was canceled or
        failed on its own) and the seconds spent loading the model."""
        spec = get_model(jobs[0].model_name)
        if spec is None:
            raise GenerationFailed(
                "model_unavailable", f"The model {jobs[0].model_name!r} is not configured."
            )
        ready, specs = self.render_specs(jobs)
        if not ready:
            return BatchResult(images=[None] * len(jobs)), 0.0
        on_step = self.progress_callback(ready)
        load_seconds = 0.0
        if spec.family == "noop":
            result = render_trivial(specs, on_step)
        else:
            started = time.perf_counter()
            try:
                model = self.cache.get(spec.path, self.speed_options(spec), config=spec.config)
            except Exception as exc:
                log.exception("could not load %s", spec.path)
                raise GenerationFailed("model_unavailable") from exc
            load_seconds = time.perf_counter() - started
            self.current_model = model
            self.advertise_models()
            try:
                result = render_batch(model, specs, on_step, self.memory_budget)
            except UnsupportedSampler as exc:
                message = f"The model {spec.name!r} cannot use the {jobs[0].sampler!r} sampler ({exc})."
                raise GenerationFailed("sampler_not_supported", message) from exc
        images = dict(zip((job.pk for job in ready), result.images, strict=True))
        return BatchResult([images.get(job.pk) for job in jobs], result.memory_mode), load_seconds

    def render_specs(self, jobs: list[Generation]) -> tuple[list[Generation], list[RenderSpec]]:
        """The jobs whose inputs could be read, with their specs. A job whose source image or mask
        is gone fails alone: the rest of its batch still runs."""
        ready, specs = [], []
        for job in jobs:
            try:
                specs.append(self.render_spec(job))
            except GenerationFailed as exc:
                self.fail(job, exc.code, exc.message)
                continue
            ready.append(job)
        return ready, specs

    def held_models(self) -> frozenset[str]:
        """Paths of the models this worker holds, on the device or in RAM (for affinity routing)."""
        return frozenset(self.catalog_paths([*self.cache.paths(), *self.cache.warm_paths()]))

    @staticmethod
    def catalog_paths(resolved: list[str]) -> list[str]:
        """The configured paths of these cache keys (which are real paths): jobs and other workers
        name models as ATELIER_MODELS does, symlinks, relative parts and all."""
        held = set(resolved)
        models = settings.ATELIER_MODELS.values()
        return sorted({spec.path for spec in models if os.path.realpath(spec.path) in held})

    def advertise_models(self) -> None:
        """Tell routing and staff which models this worker holds, and report new loads and swaps."""
        fresh = [event for event in self.cache.events if event.at > self.advertised_at]
        if not fresh:
            return
        self.advertised_at = fresh[-1].at
        if self.heartbeat is not None:
            self.heartbeat.info["models"] = self.catalog_paths(self.cache.paths())
            self.heartbeat.info["warm_models"] = self.catalog_paths(self.cache.warm_paths())
        report = [
            {"worker": self.name, "path": e.path, "kind": e.kind, "seconds": e.seconds, "at": e.at}
            for e in fresh
        ]
        with contextlib.suppress(RedisError):  # best effort: the log has them too
            queues.record_model_events(report)

    def render_spec(self, generation: Generation) -> RenderSpec:
        return RenderSpec(
            prompt=generation.prompt,
            negative_prompt=generation.negative_prompt,
            width=generation.width,
            height=generation.height,
            steps=generation.steps,
            guidance=generation.guidance,
            seeds=[generation.seed + i for i in range(generation.n)],
            init_image=load_upload(generation.input_upload),
            mask_image=load_upload(generation.mask_upload),
            strength=generation.strength or 0.6,
            sampler=generation.sampler,
        )

    def progress_callback(self, jobs: list[Generation]) -> BatchStepCallback:
        """Per step: one Redis round trip for every job's cancel flag; at most every
        `progress_interval` one UPDATE for the batch and a progress event with each job's preview."""
        last_sent = 0.0
        keys = [queues.cancel_flag_key(str(job.id)) for job in jobs]

        def on_step(step: int, total: int, latents: dict[int, torch.Tensor]) -> set[int]:
            nonlocal last_sent
            active = list(latents)
            pipe = queues.redis_client().pipeline()
            for index in active:
                pipe.exists(keys[index])
            stopped = {index for index, flag in zip(active, pipe.execute(), strict=True) if flag}
            for index in stopped:
                self.finish(jobs[index], GenerationStatus.CANCELED, "generation.canceled")
            running = [index for index in active if index not in stopped]
            now = time.monotonic()
            if not running or (step < total and now - last_sent < self.progress_interval):
                return stopped
            last_sent = now
            Generation.objects.filter(
                pk__in=[jobs[i].pk for i in running], status=GenerationStatus.RUNNING, worker_name=self.name
            ).update(step=step, total_steps=total)
            for index in running:
                job = jobs[index]
                job.step, job.total_steps = step, total
                preview = self.preview(latents[index])
                self.publish(job, "generation.progress", preview=preview)
            return stopped

        return on_step

    def preview(self, latents: torch.Tensor) -> str:
        """A data: URL of the cheap linear preview, with the model's own fitted factors."""
        model = self.current_model
        if model is not None and latents.shape[1] == model.preview_factors.shape[0]:
            jpeg = latents_to_preview(latents, factors=model.preview_factors, bias=model.preview_bias)
        else:
            jpeg = latents_to_preview(latents[:, :4])  # the noop family: flat latents, default factors
        return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()

    def succeed(
        self,
        generation: Generation,
        images: list[PILImage.Image],
        *,
        timings: dict[str, Any] | None = None,
        batch_size: int = 1,
        memory_mode: str = "normal",
    ) -> None:
        clock = time.perf_counter()
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
        timings = {**(timings or {}), "save": round(time.perf_counter() - clock, 4)}
        with transaction.atomic():
            done = generation.total_steps or generation.steps
            changed = self.transition(
                generation,
                GenerationStatus.SUCCEEDED,
                images=len(rows),
                step=done,
                timings=timings,
                batch_size=batch_size,
                memory_mode=memory_mode,
            )
            if not changed:
                return
            Image.objects.bulk_create(rows)
        sync_visibility(rows)  # published from the start (a Free plan's images): public objects on S3
        with contextlib.suppress(RedisError):  # metrics are best effort; the record has the timings
            queues.record_job_metrics(generation.pool, {"worker": self.name, "batch": batch_size, **timings})
        log_phase(generation, "succeeded", worker=self.name, batch_size=batch_size, seconds=timings)
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
        log_phase(generation, status, worker=self.name, code=code or None)

    def transition(self, generation: Generation, status: str, *, images: int = 0, **fields: Any) -> bool:
        """running -> terminal exactly once, settling the credits in the same transaction."""
        now = timezone.now()
        with transaction.atomic():
            # Only the worker that claimed it may finish it: a job re-queued after its worker was
            # presumed lost belongs to the next worker.
            run_seconds = (now - generation.started_at).total_seconds() if generation.started_at else None
            changed = Generation.objects.filter(
                pk=generation.pk, status=GenerationStatus.RUNNING, worker_name=self.name
            ).update(status=status, finished_at=now, run_seconds=run_seconds, **fields)
            if changed != 1:
                return False
            settle(generation, finished_images=images)
        generation.status, generation.finished_at = status, now
        for key, value in fields.items():
            setattr(generation, key, value)
        return True


def lightest_users_first(
    finished: list[tuple[Generation, list[PILImage.Image]]],
) -> list[tuple[Generation, list[PILImage.Image]]]:
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


def log_phase(generation: Generation, phase: str, **fields: Any) -> None:
    """One structured line per job phase (JSON in production), keyed by the generation id and the
    id of the request that submitted it."""
    ids = {"generation_id": str(generation.id), "request_id": generation.request_id or None}
    log.info("generation %s %s", generation.id, phase, extra={**ids, "phase": phase, **fields})


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
        "sampler": generation.sampler,
        "seed": seed,
        "strength": generation.strength,
        "generation_id": str(generation.id),
    }

"""The worker's claim loop: claim a job (and mates for its batch), render, hand the finishing over.

Every status change goes through `generations.lifecycle`; rendering, storage, progress and
previews each have a module of their own beside this one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections import Counter
from typing import Any

import torch
from django.conf import settings
from PIL import Image as PILImage
from redis.exceptions import RedisError
from rq.timeouts import JobTimeoutException

from core import memo
from core.errors import CATALOGUE
from core.model_catalog import ModelSpec
from generations import circuits, lifecycle, lifecycle_preemption, queues, thumbnails
from generations.events import build_event, record_webhooks
from generations.lifecycle_batch import Finished, succeed_many
from generations.models import Generation, GenerationKind, GenerationStatus
from generations.publisher import EventPublisher
from generations.registry import all_models, get_model
from generations.thumbnails import Thumbnails
from gpu_worker.affinity import holder_counts
from gpu_worker.batching import take_mates
from gpu_worker.cache import ModelCache
from gpu_worker.failures import TRANSIENT_ERRORS, GenerationFailed
from gpu_worker.fairness import lightest_users_first
from gpu_worker.finisher import Finisher
from gpu_worker.heartbeat import Heartbeat
from gpu_worker.memory import MemoryBudget
from gpu_worker.model import BatchResult, BatchStepCallback, LoadedModel, RenderSpec
from gpu_worker.noop import render_trivial
from gpu_worker.previews import preview_url
from gpu_worker.progress import step_callback
from gpu_worker.rendering import denoise_batch, load_model, render_spec
from gpu_worker.resume import save_point, take_point
from gpu_worker.speed import SpeedOptions
from gpu_worker.storage import store_images
from gpu_worker.workflow_jobs import run_workflow

log = logging.getLogger(__name__)
HELD_SECONDS = 5.0


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
        self.held: tuple[Any, float, frozenset[str]] | None = None  # held_models' last answer
        self.current_model: LoadedModel | None = None
        # Set by the worker command: saving overlaps the next batch. In-process callers (tests)
        # leave it None and get every job finished when run_one returns.
        self.finisher: Finisher | None = None
        self.in_flight: set[str] = set()
        self.in_flight_lock = threading.Lock()
        self.preempting: dict[Any, int] = {}  # job pk -> the steps it finished when it was preempted
        if memory_budget is not None:
            memory_budget.apply(device)

    def preload(self, pools: list[str]) -> None:
        """Load the pool's models that fit in the cache, those fewest other workers hold first, so
        that a fleet spreads its models instead of every worker holding the same ones."""
        specs = [s for s in all_models().values() if s.pool in pools and s.family != "noop"]
        try:
            held = holder_counts(queues.redis_client(), pools, self.name)
        except RedisError:
            held = Counter()
        chosen = sorted(specs, key=lambda spec: held[spec.path])[: self.cache.max_models]
        for spec in reversed(chosen):  # the least held is loaded last: the most recently used
            try:
                self.cache.get(spec.path, self.speed_options(spec), config=spec.config)
            except Exception:  # a broken model must not keep the worker from serving the others
                log.exception("could not preload %s", spec.path)
                circuits.record_load_failure(spec.name)

    def speed_options(self, spec: ModelSpec) -> SpeedOptions:
        return SpeedOptions.of(spec, compile_backend=settings.ATELIER_COMPILE_BACKEND)

    def push(self, user_id: int, event: dict[str, Any]) -> None:
        """A transition's event (lifecycle writes its webhooks), in order with the progress events."""
        self.publisher.publish(user_id, event)

    def publish(self, generation: Generation, event_type: str, **extra: Any) -> None:
        event = build_event(generation, event_type, **extra)
        self.publisher.publish(generation.user_id, event)
        record_webhooks(generation.user_id, event, generation)

    def run_one(self, generation_id: str) -> str:
        """Run this generation, and compatible queued ones with it as one batch. Until the finish,
        its events read each user's webhook endpoints once, not once per event (core/memo.py)."""
        with memo.scope():
            head = lifecycle.claim_id(generation_id, worker_name=self.name, publish=self.push)
            if head is None:  # canceled while queued, or delivered twice: someone else owns the row
                return "skipped"
            spec = get_model(head.model_name)
            jobs = [head]
            workflow = head.kind == GenerationKind.WORKFLOW  # a graph runs alone (workflow_jobs.py)
            # A preempted job runs alone: it may resume from a saved step that mates would not share.
            if spec is not None and spec.max_batch > 1 and not workflow and not head.preemptions:
                jobs += take_mates(head, max_images=spec.max_batch, worker_name=self.name, publish=self.push)
            for job in jobs:
                log_phase(job, "started", worker=self.name, batch_size=len(jobs), model=job.model_name)
            with self.in_flight_lock:
                self.in_flight.update(str(job.id) for job in jobs)
            self.advertise_jobs()
            handed_over = False
            try:
                if workflow:
                    run_workflow(self, head)
                else:
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
        # A preempted job is queued again (maybe running elsewhere already): its flags are not ours.
        ended = [str(job.id) for job in jobs if job.status != GenerationStatus.QUEUED]
        with contextlib.suppress(RedisError):  # the flags expire by themselves
            flags = [
                key(job_id) for job_id in ended for key in (queues.cancel_flag_key, queues.preempt_flag_key)
            ]
            if flags:
                queues.redis_client().delete(*flags)

    def advertise_jobs(self) -> None:
        if self.heartbeat is not None:
            with self.in_flight_lock:
                self.heartbeat.current_jobs = sorted(self.in_flight)
            self.heartbeat.wake()

    def run_batch(self, jobs: list[Generation]) -> bool:
        """Render the batch and finish its jobs; True when the finishing was handed to the finisher."""
        clock = time.perf_counter()
        self.preempting.clear()
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
        self.give_back_preempted(jobs, result)
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
        later: list[Thumbnails] = []
        try:
            ready = []
            for job, images in lightest_users_first(finished):
                saving = time.perf_counter()
                # One job's owner waits for it: its thumbnails after the finish. A batch's go before:
                # written after, trivial batches drained no faster (bench/latency.py --only drain).
                rows = store_images(job, images, later if len(finished) == 1 else None)
                timings = {
                    "queue_wait": round(max(0.0, (job.started_at - job.created_at).total_seconds()), 4)
                    if job.started_at
                    else 0.0,
                    "load": round(load_seconds, 4),
                    "denoise": round(denoise, 4),
                    "it_per_s": round(job.total_steps / denoise, 2) if denoise > 0 else None,
                    "save": round(time.perf_counter() - saving, 4),
                }
                ready.append(Finished(job, rows, timings))
            if finished:  # one model per batch: its circuit closes before anyone hears of the success
                circuits.record_job(jobs[0].model_name, succeeded=True, jobs=len(finished))
            done = self.succeed_all(ready, batch_size=len(jobs), memory_mode=result.memory_mode)
            if finished:
                per_job = (time.perf_counter() - clock) / len(finished)
                with contextlib.suppress(RedisError):
                    queues.record_duration(jobs[0].pool, per_job, at=time.time())
            succeeded = {job.pk for job in done}
            kept = {row.thumbnail for f in ready if f.generation.pk in succeeded for row in f.images}
            for planned in later:  # their owners know already; one asked for meanwhile was made then
                if planned.path in kept:
                    thumbnails.write(planned)
        finally:
            self.forget(jobs)

    def succeed_all(self, ready: list[Finished], *, batch_size: int, memory_mode: str) -> list[Generation]:
        """The batch's finished jobs succeed together (one transaction: generations/lifecycle_batch.py);
        those that did."""
        done = succeed_many(
            ready, worker_name=self.name, batch_size=batch_size, memory_mode=memory_mode, publish=self.push
        )
        if not done:
            return done
        timings = {job.generation.pk: job.timings for job in ready}
        metrics = [{"worker": self.name, "batch": batch_size, **timings[job.pk]} for job in done]
        with contextlib.suppress(RedisError):  # metrics are best effort; the record has the timings
            queues.record_job_metrics(done[0].pool, *metrics)
        for job in done:
            log_phase(job, "succeeded", worker=self.name, batch_size=batch_size, seconds=timings[job.pk])
        return done

    def give_back_preempted(self, jobs: list[Generation], result: BatchResult) -> None:
        """The jobs stopped for a waiting priority job go back to their lane, with the point they
        can resume from when their sampler allows it (generations/lifecycle_preemption.py)."""
        for index, job in enumerate(jobs):
            step = self.preempting.pop(job.pk, None)
            if step is None:
                continue
            point = result.stopped_at.get(index)
            resumable = point is not None and save_point(job, point)
            with contextlib.suppress(RedisError):  # its next run must not stop at once for it
                queues.redis_client().delete(queues.preempt_flag_key(str(job.id)))
            if lifecycle_preemption.preempt(
                job, worker_name=self.name, step=step, resumable=resumable, publish=self.push
            ):
                log_phase(job, "preempted", worker=self.name, step=step, resumable=resumable)

    def fail_all(self, jobs: list[Generation], code: str, message: str) -> None:
        """The whole batch failed: its model's circuit hears of it (a load failure counts once)."""
        for job in jobs:
            self.fail(job, code, message)
        if code == "model_unavailable":
            circuits.record_load_failure(jobs[0].model_name)
        elif code in circuits.MODEL_FAILURES:
            circuits.record_job(jobs[0].model_name, succeeded=False, jobs=len(jobs))

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
            model, load_seconds = load_model(self.cache, spec, self.speed_options(spec))
            self.current_model = model
            self.advertise_models()
            result = denoise_batch(model, spec, specs, on_step, self.memory_budget)
        images = dict(zip((job.pk for job in ready), result.images, strict=True))
        points = {ready[index].pk: point for index, point in result.stopped_at.items()}
        stopped_at = {index: points[job.pk] for index, job in enumerate(jobs) if job.pk in points}
        return BatchResult([images.get(job.pk) for job in jobs], result.memory_mode, stopped_at), load_seconds

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
        """Paths of the models this worker holds, on the device or in RAM (for affinity routing).
        Asked at every look at the queues: the catalog is read again when the cache changed, or
        after HELD_SECONDS (a model installed meanwhile under another name)."""
        resolved = (*self.cache.paths(), *self.cache.warm_paths())
        now = time.monotonic()
        if self.held is None or self.held[0] != resolved or now - self.held[1] > HELD_SECONDS:
            self.held = (resolved, now, frozenset(self.catalog_paths(list(resolved)) if resolved else ()))
        return self.held[2]

    @staticmethod
    def catalog_paths(resolved: list[str]) -> list[str]:
        """The configured paths of these cache keys (which are real paths): jobs and other workers
        name models as ATELIER_MODELS does, symlinks, relative parts and all."""
        held = set(resolved)
        models = all_models().values()
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
        spec = render_spec(generation)
        spec.resume = take_point(generation)  # a preempted job continues where it stopped
        return spec

    def progress_callback(self, jobs: list[Generation]) -> BatchStepCallback:
        """Cancel flags, progress and previews of the batch, each step (gpu_worker/progress.py)."""

        def report(job: Generation, latents: torch.Tensor) -> None:
            self.publish(job, "generation.progress", preview=self.preview(latents))

        def preempt(job: Generation, step: int) -> None:
            self.preempting[job.pk] = step  # given back once the batch's render returns

        return step_callback(
            jobs,
            worker_name=self.name,
            interval=self.progress_interval,
            cancel=self.cancel,
            report=report,
            preempt=preempt,
        )

    def preview(self, latents: torch.Tensor) -> str:
        return preview_url(latents, self.current_model)

    def retry_later(self, generation: Generation, exc: Exception) -> None:
        """Back to pending with a backoff; the dispatcher releases it when it is due."""
        status = lifecycle.retry_later(generation, exc, worker_name=self.name, publish=self.push)
        if status == "failed":
            log_phase(generation, status, worker=self.name, code="retries_exhausted")

    def fail(self, generation: Generation, code: str, message: str) -> None:
        if lifecycle.fail(generation, code, message, worker_name=self.name, publish=self.push):
            log_phase(generation, "failed", worker=self.name, code=code)

    def cancel(self, generation: Generation) -> None:
        if lifecycle.cancel_running(generation, worker_name=self.name, publish=self.push):
            log_phase(generation, "canceled", worker=self.name, code=None)


def log_phase(generation: Generation, phase: str, **fields: Any) -> None:
    """One structured line per job phase (JSON in production), keyed by the generation id and the
    id of the request that submitted it."""
    ids = {"generation_id": str(generation.id), "request_id": generation.request_id or None}
    log.info("generation %s %s", generation.id, phase, extra={**ids, "phase": phase, **fields})

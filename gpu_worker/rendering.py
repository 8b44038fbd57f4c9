"""From a batch of claimed jobs to pictures: their render specs, the model, the denoising run."""

from __future__ import annotations

import logging
import time

from core.model_catalog import ModelSpec
from generations.models import Generation
from gpu_worker.cache import ModelCache
from gpu_worker.failures import GenerationFailed
from gpu_worker.memory import MemoryBudget
from gpu_worker.model import BatchResult, BatchStepCallback, LoadedModel, RenderSpec
from gpu_worker.pipeline import render_batch
from gpu_worker.samplers import UnsupportedSampler
from gpu_worker.speed import SpeedOptions
from gpu_worker.storage import load_upload

log = logging.getLogger(__name__)


def render_spec(generation: Generation) -> RenderSpec:
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
        loras=tuple((str(lora["name"]), float(lora["weight"])) for lora in generation.loras or []),
    )


def load_model(cache: ModelCache, spec: ModelSpec, speed: SpeedOptions) -> tuple[LoadedModel, float]:
    """The model from the cache (loading it if need be) and the seconds that took."""
    started = time.perf_counter()
    try:
        model = cache.get(spec.path, speed, config=spec.config)
    except Exception as exc:
        log.exception("could not load %s", spec.path)
        raise GenerationFailed("model_unavailable", "The model could not be loaded.") from exc
    return model, time.perf_counter() - started


def denoise_batch(
    model: LoadedModel,
    spec: ModelSpec,
    specs: list[RenderSpec],
    on_step: BatchStepCallback,
    budget: MemoryBudget | None,
) -> BatchResult:
    try:
        return render_batch(model, specs, on_step, budget)
    except UnsupportedSampler as exc:
        message = f"The model {spec.name!r} cannot use the {specs[0].sampler!r} sampler ({exc})."
        raise GenerationFailed("sampler_not_supported", message) from exc

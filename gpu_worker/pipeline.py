"""Rendering with diffusers: one job or a batch of compatible jobs, through the memory ladder."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from PIL import Image

from gpu_worker.loras import applied
from gpu_worker.memory import MemoryBudget, climb, describe_modes, memory_mode
from gpu_worker.model import (
    AllCanceled,
    BatchResult,
    BatchStepCallback,
    LoadedModel,
    RenderSpec,
    ResumePoint,
    StepCallback,
)
from gpu_worker.resume import resumable, resuming, snapshot
from gpu_worker.samplers import make_scheduler, with_scheduler


class RenderCanceled(Exception):
    """Raised by `render` when `on_step` asked to stop."""


def render(model: LoadedModel, spec: RenderSpec, on_step: StepCallback | None = None) -> list[Image.Image]:
    """One job alone; raises RenderCanceled when `on_step` returns False."""

    def on_batch_step(step: int, total: int, latents: dict[int, torch.Tensor]) -> set[int]:
        if on_step is not None and on_step(step, total, latents[0]) is False:
            return {0}
        return set()

    result = render_batch(model, [spec], on_batch_step)
    images = result.images[0]
    if images is None:
        raise RenderCanceled("canceled")
    return images


def render_batch(
    model: LoadedModel,
    specs: list[RenderSpec],
    on_step: BatchStepCallback | None = None,
    budget: MemoryBudget | None = None,
) -> BatchResult:
    """Several compatible jobs as one batch: the same kind, size, steps, guidance, sampler and (for
    img2img and inpainting) strength; each with its own prompts, seeds, source image and mask.

    Each image still draws its noise from its own seed, so a job gives the same images alone or
    batched. On out-of-memory it climbs the ladder in `gpu_worker.memory`: split the batch, then
    slice attention and the VAE, then offload to the CPU.
    """
    for spec in specs:
        if not spec.seeds:
            raise ValueError("at least one seed is required")
        if spec.denoising_steps < 1:
            raise ValueError("steps * strength must be at least 1")
        if spec.shared() != specs[0].shared():
            raise ValueError(
                "jobs of one batch must share kind, size, steps, guidance, strength, sampler and LoRAs"
            )
    if len(specs) > 1 and any(spec.resume is not None for spec in specs):
        raise ValueError("a job that resumes from a saved step runs alone")
    make_scheduler(model.txt2img.scheduler, specs[0].sampler)  # an unfit sampler fails before any work
    images: list[list[Image.Image] | None] = [None] * len(specs)
    modes: set[str] = set()
    canceled: set[int] = set()
    stopped_at: dict[int, ResumePoint] = {}

    def attempt(indexes: list[int], mode: str) -> None:
        try:
            with model.lock, memory_mode(model, mode), applied(model.txt2img, specs[0].loras):
                if budget is not None:
                    budget.check(model, [specs[i] for i in indexes], mode)
                outputs = _run_once(
                    model, [specs[i] for i in indexes], indexes, on_step, canceled, stopped_at
                )
        except AllCanceled:
            return
        modes.add(mode)
        for index, output in zip(indexes, outputs, strict=True):
            images[index] = None if index in canceled else output

    climb(model, list(range(len(specs))), attempt, modes)
    return BatchResult(images=images, memory_mode=describe_modes(modes), stopped_at=stopped_at)


def _run_once(
    model: LoadedModel,
    specs: list[RenderSpec],
    indexes: list[int],
    on_step: BatchStepCallback | None,
    canceled: set[int],
    stopped_at: dict[int, ResumePoint],
) -> list[list[Image.Image]]:
    first = specs[0]
    # Image i of the batch belongs to job owner[i]; one CPU generator per image, so an image
    # depends only on its own seed whatever the batch, and CPU noise is the same on every device.
    owner = [index for index, spec in zip(indexes, specs, strict=True) for _ in spec.seeds]
    generators = [torch.Generator("cpu").manual_seed(seed) for spec in specs for seed in spec.seeds]
    prompts = [spec.prompt for spec in specs for _ in spec.seeds]
    positions = {i: [k for k, o in enumerate(owner) if o == i] for i in indexes}
    negatives = [spec.negative_prompt for spec in specs for _ in spec.seeds]

    def step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if on_step is None:
            return {}
        latents = tensors["latents"]
        active = [i for i in indexes if i not in canceled]
        slices = {i: latents[positions[i]] for i in active}
        stopped = set(on_step(index + 1, pipe.num_timesteps, slices)) - canceled
        canceled.update(stopped)
        if can_resume:  # where each stopped job could continue from (a preempted one does)
            for i in stopped & slices.keys():
                stopped_at[i] = snapshot(index + 1, slices[i], positions[i], pipe.scheduler)
        # Raising here aborts before the next UNet call and skips the VAE decode; setting
        # pipe._interrupt would still decode the half-finished latents.
        if all(i in canceled for i in indexes):
            raise AllCanceled()
        return {}

    arguments: dict[str, Any] = {
        "prompt": prompts,
        "negative_prompt": negatives if any(negatives) else None,
        "num_inference_steps": first.steps,
        "guidance_scale": first.guidance,
        "num_images_per_prompt": 1,
        "generator": generators,
        "callback_on_step_end": step_end,
        "callback_on_step_end_tensor_inputs": ["latents"],
    }
    # A scheduler of its own for every (sub-)batch: after an out-of-memory split each half starts
    # from a fresh one, as it would alone.
    scheduler = make_scheduler(model.txt2img.scheduler, first.sampler)
    can_resume = False  # set for txt2img with a deterministic sampler (gpu_worker/resume.py)
    with torch.inference_mode():
        if first.init_image is None:
            pipe = with_scheduler(model.txt2img, scheduler)
            can_resume = resumable(first, scheduler, pipe)
            if first.resume is not None and can_resume:
                pipe = resuming(pipe, scheduler, first.resume)
                arguments["latents"] = first.resume.latents
            output = pipe(width=first.width, height=first.height, **arguments)
        else:
            size = (first.width, first.height)
            inits = [
                s.init_image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
                for s in specs
                for _ in s.seeds
                if s.init_image
            ]
            if first.mask_image is None:
                pipe = with_scheduler(model.img2img, scheduler)
                if "width" in inspect.signature(pipe.__call__).parameters:  # SD3 would resize to its default
                    arguments.update(width=first.width, height=first.height)
                output = pipe(image=inits, strength=first.strength, **arguments)
            else:
                masks = [
                    s.mask_image.convert("L").resize(size, Image.Resampling.NEAREST)
                    for s in specs
                    for _ in s.seeds
                    if s.mask_image
                ]
                pipe = with_scheduler(model.inpaint, scheduler)
                output = pipe(
                    image=inits,
                    mask_image=masks,
                    strength=first.strength,
                    width=first.width,
                    height=first.height,
                    **arguments,
                )
    pictures = list(output.images)
    per_job: list[list[Image.Image]] = [[] for _ in specs]
    for picture, index in zip(pictures, owner, strict=True):
        per_job[indexes.index(index)].append(picture)
    return per_job

"""The "noop" family: no model, flat images from the seed, the same step callbacks. It lets
benchmarks and tests measure the queue instead of the denoiser."""

from __future__ import annotations

import torch
from PIL import Image

from gpu_worker.model import BatchResult, BatchStepCallback, RenderSpec


def render_trivial(specs: list[RenderSpec], on_step: BatchStepCallback | None = None) -> BatchResult:
    """Flat images, one colour per seed, after calling `on_step` for every step."""
    images: list[list[Image.Image] | None] = [None] * len(specs)
    canceled: set[int] = set()
    steps = max(spec.denoising_steps for spec in specs)
    for step in range(1, steps + 1):
        if on_step is None:
            break
        latents = {
            i: torch.zeros(len(spec.seeds), 4, max(1, spec.height // 8), max(1, spec.width // 8))
            for i, spec in enumerate(specs)
            if i not in canceled
        }
        canceled.update(on_step(step, steps, latents))
        if len(canceled) == len(specs):
            break
    for i, spec in enumerate(specs):
        if i not in canceled:
            images[i] = [Image.new("RGB", (spec.width, spec.height), seed_color(seed)) for seed in spec.seeds]
    return BatchResult(images=images)


def seed_color(seed: int) -> tuple[int, int, int]:
    return (seed * 97 % 256, seed * 57 % 256, seed * 31 % 256)

"""Text encoding and the denoising loop of the sampling nodes, on a loaded diffusers model's
components (the worker's resident model: nothing is loaded twice). Runs in the worker only.

ComfyUI's semantics are kept where clients see them: ``denoise`` < 1 runs ``steps`` steps of a
longer schedule; KSamplerAdvanced runs the steps ``start_at_step``..``end_at_step`` of its schedule,
with or without fresh noise; a latent's ``noise_mask`` keeps the unmasked part of the source.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from workflows import runtime
from workflows.samplers import make_scheduler
from workflows.tensors import LATENT_RATIO, ratio_of, vae_ratio


@dataclass(frozen=True)
class Sampling:
    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0
    start_step: int = 0
    last_step: int = 10000
    add_noise: bool = True
    leftover_noise: bool = False


def encode_text(clip: runtime.ClipHandle, text: str) -> list[list[Any]]:
    """CONDITIONING: ``[[embeddings, {"pooled_output": pooled or None}]]``."""
    pipe = clip.loaded.txt2img
    device = clip.loaded.device
    with clip.loaded.lock, runtime.patched(clip.loaded, clip.patches), torch.inference_mode():
        encoded = pipe.encode_prompt(
            prompt=text,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
            clip_skip=clip.skip_layers or None,
        )
    pooled = encoded[2] if len(encoded) > 3 else None
    return [[encoded[0], {"pooled_output": pooled}]]


def conditioning(value: list[list[Any]]) -> tuple[torch.Tensor, torch.Tensor | None]:
    embeds, extra = value[0][0], value[0][1] if len(value[0]) > 1 else {}
    return embeds, extra.get("pooled_output")


def schedule_window(plan: Sampling) -> tuple[int, int, int]:
    """(steps of the whole schedule, first step to run, step to stop before)."""
    if plan.denoise < 1.0:
        total = max(plan.steps, math.ceil(plan.steps / max(plan.denoise, 1e-4)))
        return total, total - plan.steps, total
    return plan.steps, min(plan.start_step, plan.steps), min(plan.last_step, plan.steps)


def sample(
    model: runtime.ModelHandle, plan: Sampling, positive: Any, negative: Any, latent: dict[str, Any]
) -> dict[str, Any]:
    loaded = model.loaded
    pipe = loaded.txt2img
    unet = getattr(pipe, "unet", None)
    if unet is None:
        raise runtime.NodeFailed(
            "sampler_not_supported", f"{model.name} has no UNet: workflows cannot sample it yet."
        )
    if plan.denoise <= 0.0:
        return dict(latent)
    total, start, stop = schedule_window(plan)
    if stop <= start:
        return dict(latent)
    device = unet.device
    scheduler = make_scheduler(pipe.scheduler, plan.sampler_name, plan.scheduler)
    scheduler.set_timesteps(total, device=device)
    order = int(getattr(scheduler, "order", 1))
    timesteps = scheduler.timesteps[start * order : stop * order]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start * order)
    source = latent["samples"].float()
    channels = int(unet.config.in_channels)
    ratio = vae_ratio(pipe.vae)
    if not source.any() and (source.shape[1] != channels or ratio_of(latent) != ratio):
        # An empty latent (EmptyLatentImage assumes ComfyUI's 4 channels and 8x): this model's.
        height, width = (side * ratio_of(latent) // ratio for side in source.shape[-2:])
        source = torch.zeros(source.shape[0], channels, max(1, height), max(1, width))
    batch = source.shape[0]
    generator = torch.Generator("cpu").manual_seed(plan.seed % 2**64)
    noise = torch.randn(source.shape, generator=generator).to(device)
    source = source.to(device)
    x = scheduler.add_noise(source, noise, timesteps[:1]) if plan.add_noise else source
    mask = latent.get("noise_mask")
    if mask is not None:
        mask = F.interpolate(
            mask.float().reshape(-1, 1, mask.shape[-2], mask.shape[-1]),
            size=source.shape[-2:],
            mode="bilinear",
        )
        mask = mask.to(device).expand(batch, 1, *source.shape[-2:])
    pos, pos_pooled = conditioning(positive)
    neg, neg_pooled = conditioning(negative)
    guided = plan.cfg != 1.0
    embeds = (
        torch.cat([neg.expand(batch, -1, -1), pos.expand(batch, -1, -1)])
        if guided
        else pos.expand(batch, -1, -1)
    )
    embeds = embeds.to(device, unet.dtype)
    extra = added_conditions(unet, pos_pooled, neg_pooled, source, batch, guided, ratio)
    steps_total = stop - start
    step_options: dict[str, Any] = {}
    if "generator" in inspect.signature(scheduler.step).parameters:  # ancestral and SDE samplers
        step_options["generator"] = torch.Generator("cpu").manual_seed((plan.seed + 1) % 2**64)
    with loaded.lock, runtime.patched(loaded, model.patches), torch.inference_mode():
        for index, t in enumerate(timesteps):
            model_input = torch.cat([x, x]) if guided else x
            model_input = scheduler.scale_model_input(model_input, t).to(unet.dtype)
            predicted = unet(model_input, t, encoder_hidden_states=embeds, return_dict=False, **extra)[
                0
            ].float()
            if guided:
                unconditional, conditional = predicted.chunk(2)
                predicted = unconditional + plan.cfg * (conditional - unconditional)
            x = scheduler.step(predicted, t, x, return_dict=False, **step_options)[0]
            if mask is not None:
                following = timesteps[index + 1 : index + 2]
                kept = scheduler.add_noise(source, noise, following) if len(following) else source
                x = mask * x + (1.0 - mask) * kept
            if runtime.current().progress(math.ceil((index + 1) / order), steps_total, x) is False:
                raise runtime.Interrupted()
    return {**latent, "samples": x.cpu(), LATENT_RATIO: ratio}


def added_conditions(
    unet: Any,
    pos_pooled: Any,
    neg_pooled: Any,
    source: torch.Tensor,
    batch: int,
    guided: bool,
    ratio: int = 8,
) -> dict[str, Any]:
    """SDXL's extra conditioning (pooled text and the size ids); nothing for SD 1.x and 2.x."""
    if getattr(unet.config, "addition_embed_type", None) != "text_time" or pos_pooled is None:
        return {}
    height, width = source.shape[-2] * ratio, source.shape[-1] * ratio
    ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=unet.dtype, device=unet.device)
    pooled = pos_pooled.expand(batch, -1)
    if guided:
        negative = neg_pooled if neg_pooled is not None else torch.zeros_like(pos_pooled)
        pooled = torch.cat([negative.expand(batch, -1), pooled])
    rows = pooled.shape[0]
    return {
        "added_cond_kwargs": {
            "text_embeds": pooled.to(unet.device, unet.dtype),
            "time_ids": ids.expand(rows, -1),
        }
    }

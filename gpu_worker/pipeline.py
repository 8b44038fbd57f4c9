"""The only module that talks to diffusers: model loading, rendering, previews and encoding."""

from __future__ import annotations

import copy
import inspect
import io
import json
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
)
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from generations.samplers import DEFAULT_SAMPLER
from gpu_worker.memory import MemoryBudget, describe_modes, memory_mode, next_mode, release_device_memory

# on_step(step, total_steps, latents) -> keep going?  step is 1-based.
StepCallback = Callable[[int, int, torch.Tensor], bool]

# Linear SD 1.x latent -> RGB approximation (rows: latent channels, columns: R, G, B), used when
# a model's own factors could not be fitted.
LATENT_RGB_FACTORS = torch.tensor(
    [
        [0.298, 0.207, 0.208],
        [0.187, 0.286, 0.173],
        [-0.158, 0.189, 0.264],
        [-0.184, -0.271, -0.473],
    ]
)


class RenderCanceled(Exception):
    """Raised by `render` when `on_step` asked to stop."""


class UnsupportedSampler(ValueError):
    """The sampler does not fit the model's kind of diffusion (say, DDIM on a flow-matching model)."""


# Samplers on a discrete noise schedule (SD 1.x/2.x, SDXL): the class and what the name implies.
# Whatever the name leaves open (betas, prediction type, timestep spacing) comes from the model's
# own config; the sigma spacing is pinned so that "euler" on a Karras-default model is plain Euler.
PLAIN_SIGMAS = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}
DISCRETE_SAMPLERS: dict[str, tuple[Any, dict[str, Any]]] = {
    "euler": (EulerDiscreteScheduler, PLAIN_SIGMAS),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, **PLAIN_SIGMAS},
    ),
    "dpmpp_2m_karras": (
        DPMSolverMultistepScheduler,
        {**PLAIN_SIGMAS, "algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    # Latent models must not clip the predicted sample to [-1, 1] (DDIM's default is for pixels).
    "ddim": (DDIMScheduler, {"clip_sample": False, "set_alpha_to_one": False}),
}


def is_flow_matching(scheduler: Any) -> bool:
    return type(scheduler).__name__.startswith("FlowMatch") or (
        scheduler.config.get("prediction_type") == "flow_prediction"
    )


def make_scheduler(model_scheduler: Any, sampler: str) -> Any:
    """A new scheduler for `sampler`, made from the config of the model's own scheduler.

    Schedulers keep per-run state (timesteps, step index, the multistep solvers' history), so every
    render gets a fresh one and the model's own is never stepped.
    """
    config = model_scheduler.config
    if sampler == DEFAULT_SAMPLER:
        return type(model_scheduler).from_config(config)
    if is_flow_matching(model_scheduler):
        if sampler == "euler" and type(model_scheduler).__name__.startswith("FlowMatch"):
            return FlowMatchEulerDiscreteScheduler.from_config(config)
        raise UnsupportedSampler(f"the {sampler!r} sampler does not fit a flow-matching model")
    if sampler not in DISCRETE_SAMPLERS:
        raise UnsupportedSampler(f"unknown sampler {sampler!r}")
    scheduler_class, implied = DISCRETE_SAMPLERS[sampler]
    return scheduler_class.from_config(config, **implied)


def with_scheduler(pipe: Any, scheduler: Any) -> Any:
    """`pipe` with its own scheduler: a shallow copy sharing every other component (no memory), so
    the cached pipelines and their scheduler stay as they were for the next job."""
    view = copy.copy(pipe)
    view.scheduler = scheduler
    return view


@dataclass
class LoadedModel:
    path: str
    txt2img: Any  # the family's text-to-image pipeline (StableDiffusion, -XL, -3 ...)
    load_seconds: float
    device: str = "cpu"
    # latent -> RGB preview: (channels, 3) factors and a (3,) bias, fitted to this model's VAE.
    preview_factors: torch.Tensor = field(default_factory=lambda: LATENT_RGB_FACTORS)
    preview_bias: torch.Tensor = field(default_factory=lambda: torch.zeros(3))
    # Each render steps a scheduler of its own (`with_scheduler`), but the denoiser's attention
    # processors and offload hooks are switched per render (`memory_mode`): renders must not overlap.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _img2img: Any = field(default=None, repr=False)
    _inpaint: Any = field(default=None, repr=False)

    @property
    def denoiser(self) -> Any:
        """The UNet, or the transformer of transformer-based families."""
        return getattr(self.txt2img, "unet", None) or self.txt2img.transformer

    @property
    def img2img(self) -> Any:
        """The family's image-to-image pipeline on the same components (no extra memory)."""
        if self._img2img is None:
            pipe: Any = AutoPipelineForImage2Image.from_pipe(self.txt2img)
            pipe.set_progress_bar_config(disable=True)
            self._img2img = pipe
        return self._img2img

    @property
    def inpaint(self) -> Any:
        """The family's inpainting pipeline on the same components. With a plain txt2img denoiser
        diffusers keeps the unmasked latents from the source at every step."""
        if self._inpaint is None:
            pipe: Any = AutoPipelineForInpainting.from_pipe(self.txt2img)
            pipe.set_progress_bar_config(disable=True)
            self._inpaint = pipe
        return self._inpaint

    def fit_preview(self, samples: int = 4, side: int = 16) -> None:
        """Least-squares fit of RGB (the VAE's decode, averaged over each latent pixel's block)
        on the latent channels: the cheap per-step preview for any family and any VAE."""
        vae = self.txt2img.vae
        channels = int(vae.config.latent_channels)
        scale = float(vae.config.scaling_factor)
        shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
        generator = torch.Generator("cpu").manual_seed(0)
        latents = torch.randn(samples, channels, side, side, generator=generator)
        with torch.inference_mode():
            decoded = (
                vae.decode((latents / scale + shift).to(self.device, vae.dtype), return_dict=False)[0]
                .float()
                .cpu()
            )
        block = decoded.shape[-1] // side
        targets = torch.nn.functional.avg_pool2d(decoded, block)  # (samples, 3, side, side)
        inputs = latents.permute(0, 2, 3, 1).reshape(-1, channels)
        inputs = torch.cat([inputs, torch.ones(inputs.shape[0], 1)], dim=1)
        solution = torch.linalg.lstsq(inputs, targets.permute(0, 2, 3, 1).reshape(-1, 3)).solution
        self.preview_factors, self.preview_bias = solution[:channels], solution[channels]


@dataclass
class RenderSpec:
    prompt: str
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    steps: int = 20
    guidance: float = 7.0
    seeds: list[int] = field(default_factory=lambda: [0])
    init_image: Image.Image | None = None
    mask_image: Image.Image | None = None  # white = repaint, black = keep (with init_image)
    strength: float = 0.75
    sampler: str = DEFAULT_SAMPLER

    @property
    def kind(self) -> str:
        if self.init_image is None:
            return "txt2img"
        return "img2img" if self.mask_image is None else "inpaint"

    def shared(self) -> tuple[Any, ...]:
        """What every job of one batch has in common (their prompts, seeds and images may differ)."""
        strength = None if self.init_image is None else self.strength
        return (self.kind, self.width, self.height, self.steps, self.guidance, strength, self.sampler)

    @property
    def denoising_steps(self) -> int:
        """Steps actually run: img2img skips the first (1 - strength) of the schedule."""
        if self.init_image is None:
            return self.steps
        return min(int(self.steps * self.strength), self.steps)


# on_batch_step(step, total, latents by job index) -> indexes of the jobs to stop (canceled).
BatchStepCallback = Callable[[int, int, dict[int, torch.Tensor]], Collection[int]]


class AllCanceled(Exception):
    """Every job of a (sub-)batch was canceled: stop before the next UNet call."""


@dataclass
class BatchResult:
    images: list[list[Image.Image] | None]  # per job; None when the job was canceled
    memory_mode: str = "normal"  # which rung of the out-of-memory ladder it took


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
            raise ValueError("jobs of one batch must share kind, size, steps, guidance, strength and sampler")
    make_scheduler(model.txt2img.scheduler, specs[0].sampler)  # an unfit sampler fails before any work
    images: list[list[Image.Image] | None] = [None] * len(specs)
    modes: set[str] = set()
    canceled: set[int] = set()

    def run(indexes: list[int], mode: str) -> None:
        try:
            with model.lock, memory_mode(model, mode):
                if budget is not None:
                    budget.check(model, [specs[i] for i in indexes], mode)
                outputs = _run_once(model, [specs[i] for i in indexes], indexes, on_step, canceled)
            modes.add(mode)
            for index, output in zip(indexes, outputs, strict=True):
                images[index] = None if index in canceled else output
        except AllCanceled:
            return
        except torch.OutOfMemoryError:
            release_device_memory(model)
            if len(indexes) > 1:
                modes.add("split")
                half = len(indexes) // 2
                run(indexes[:half], mode)
                run(indexes[half:], mode)
                return
            following = next_mode(mode, model)
            if following is None:
                raise
            run(indexes, following)

    pending = list(range(len(specs)))
    run(pending, "normal")
    return BatchResult(images=images, memory_mode=describe_modes(modes))


def _run_once(
    model: LoadedModel,
    specs: list[RenderSpec],
    indexes: list[int],
    on_step: BatchStepCallback | None,
    canceled: set[int],
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
        canceled.update(on_step(index + 1, pipe.num_timesteps, slices))
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
    with torch.inference_mode():
        if first.init_image is None:
            pipe = with_scheduler(model.txt2img, scheduler)
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


def render_trivial(specs: list[RenderSpec], on_step: BatchStepCallback | None = None) -> BatchResult:
    """The "noop" family: no model, flat images from the seed, the same step callbacks. It lets
    benchmarks and tests measure the queue instead of the denoiser."""
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


def latents_to_preview(
    latents: torch.Tensor,
    *,
    max_side: int = 128,
    factors: torch.Tensor = LATENT_RGB_FACTORS,
    bias: torch.Tensor | None = None,
) -> bytes:
    """JPEG preview of the first latent in the batch through a linear latent -> RGB map; its
    longer side is scaled to `max_side`. No VAE decode: it costs a few hundred microseconds."""
    if latents.ndim != 4 or latents.shape[1] != factors.shape[0]:
        raise ValueError(f"expected (batch, {factors.shape[0]}, h, w) latents, got {tuple(latents.shape)}")
    first = latents[0].detach().to("cpu", torch.float32)
    rgb = torch.einsum("chw,cr->hwr", first, factors)
    if bias is not None:
        rgb = rgb + bias
    pixels = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    image = Image.fromarray(pixels)
    scale = max_side / max(image.size)
    if scale != 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


def png_with_parameters(image: Image.Image, parameters: dict[str, Any]) -> bytes:
    info = PngInfo()
    # json.dumps escapes non-ASCII, which keeps the value valid for a Latin-1 tEXt chunk.
    info.add_text("parameters", json.dumps(parameters))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def webp_thumbnail(image: Image.Image, max_side: int = 256) -> bytes:
    thumbnail = image.copy()
    thumbnail.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if thumbnail.mode not in ("RGB", "RGBA"):
        thumbnail = thumbnail.convert("RGB")
    buffer = io.BytesIO()
    thumbnail.save(buffer, "WEBP", quality=80)
    return buffer.getvalue()

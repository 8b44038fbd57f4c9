"""A loaded model and what one job asks of it: the objects the renderer, the memory ladder, the
cache and the previews share."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting
from PIL import Image

from generations.samplers import DEFAULT_SAMPLER

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
class ResumePoint:
    """Where a preempted txt2img job stopped (gpu_worker/resume.py): ``step`` steps done, the
    latents after them, and the multistep solver's history (DPM++ 2M's last model outputs)."""

    step: int
    latents: torch.Tensor
    history: list[torch.Tensor | None] = field(default_factory=list)
    lower_order_nums: int = 0


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
    loras: tuple[tuple[str, float], ...] = ()  # (file name, weight), applied for the render
    resume: ResumePoint | None = None  # a preempted job continues from here (it runs alone)

    @property
    def kind(self) -> str:
        if self.init_image is None:
            return "txt2img"
        return "img2img" if self.mask_image is None else "inpaint"

    def shared(self) -> tuple[Any, ...]:
        """What every job of one batch has in common (their prompts, seeds and images may differ)."""
        strength = None if self.init_image is None else self.strength
        shared = (self.kind, self.width, self.height, self.steps, self.guidance, strength, self.sampler)
        return (*shared, self.loras)

    @property
    def denoising_steps(self) -> int:
        """Steps actually run: img2img skips the first (1 - strength) of the schedule."""
        if self.init_image is None:
            return self.steps
        return min(int(self.steps * self.strength), self.steps)


# on_step(step, total_steps, latents) -> keep going?  step is 1-based.
StepCallback = Callable[[int, int, torch.Tensor], bool]

# on_batch_step(step, total, latents by job index) -> indexes of the jobs to stop (canceled).
BatchStepCallback = Callable[[int, int, dict[int, torch.Tensor]], Collection[int]]


class AllCanceled(Exception):
    """Every job of a (sub-)batch was canceled: stop before the next UNet call."""


@dataclass
class BatchResult:
    images: list[list[Image.Image] | None]  # per job; None when the job was canceled
    memory_mode: str = "normal"  # which rung of the out-of-memory ladder it took
    # Per job index, where a job that was stopped could resume (deterministic samplers only).
    stopped_at: dict[int, ResumePoint] = field(default_factory=dict)

"""The only module that talks to diffusers: model loading, rendering, previews and encoding."""

from __future__ import annotations

import gc
import io
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline
from PIL import Image
from PIL.PngImagePlugin import PngInfo

# on_step(step, total_steps, latents) -> keep going?  step is 1-based.
StepCallback = Callable[[int, int, torch.Tensor], bool]

# Linear SD 1.x latent -> RGB approximation (rows: latent channels, columns: R, G, B).
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


@dataclass
class LoadedModel:
    path: str
    txt2img: Any  # StableDiffusionPipeline
    load_seconds: float
    # The scheduler is stateful and shared by both pipelines, so renders on one model must not overlap.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _img2img: Any = field(default=None, repr=False)
    _inpaint: Any = field(default=None, repr=False)

    @property
    def img2img(self) -> Any:
        """StableDiffusionImg2ImgPipeline sharing the txt2img components (no extra memory)."""
        if self._img2img is None:
            pipe: Any = StableDiffusionImg2ImgPipeline(
                **self.txt2img.components, requires_safety_checker=False
            )
            pipe.set_progress_bar_config(disable=True)
            self._img2img = pipe
        return self._img2img

    @property
    def inpaint(self) -> Any:
        """StableDiffusionInpaintPipeline on the same components. With a 4-channel UNet (a plain
        txt2img model) diffusers keeps the unmasked latents from the source at every step."""
        if self._inpaint is None:
            pipe: Any = StableDiffusionInpaintPipeline(
                **self.txt2img.components, requires_safety_checker=False
            )
            pipe.set_progress_bar_config(disable=True)
            self._inpaint = pipe
        return self._inpaint


class ModelCache:
    """Keeps up to `max_models` pipelines resident, evicting the least recently used."""

    def __init__(self, device: str = "cpu", max_models: int = 2, dtype: torch.dtype | None = None) -> None:
        if max_models < 1:
            raise ValueError("max_models must be at least 1")
        self.device = device
        self.max_models = max_models
        self.dtype = dtype or (torch.float32 if device == "cpu" else torch.float16)
        self.loads = 0
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and os.path.realpath(path) in self._models

    def paths(self) -> list[str]:
        """Resident model paths, least recently used first."""
        return list(self._models)

    def get(self, path: str) -> LoadedModel:
        key = os.path.realpath(path)
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            # Evict before loading so two large models never need to fit at once.
            while len(self._models) >= self.max_models:
                self._models.popitem(last=False)
                self._release_memory()
            model = self._load(key)
            self._models[key] = model
            return model

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._release_memory()

    def _load(self, path: str) -> LoadedModel:
        started = time.perf_counter()
        pipe = StableDiffusionPipeline.from_pretrained(
            path,
            local_files_only=True,
            safety_checker=None,
            requires_safety_checker=False,
            torch_dtype=self.dtype,
        )
        pipe = pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.loads += 1
        return LoadedModel(path=path, txt2img=pipe, load_seconds=time.perf_counter() - started)

    def _release_memory(self) -> None:
        gc.collect()
        if self.device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()


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

    @property
    def denoising_steps(self) -> int:
        """Steps actually run: img2img skips the first (1 - strength) of the schedule."""
        if self.init_image is None:
            return self.steps
        return min(int(self.steps * self.strength), self.steps)


def render(model: LoadedModel, spec: RenderSpec, on_step: StepCallback | None = None) -> list[Image.Image]:
    if not spec.seeds:
        raise ValueError("at least one seed is required")
    if spec.denoising_steps < 1:
        raise ValueError("steps * strength must be at least 1")
    # One CPU generator per image: image i depends only on its own seed, whatever the batch size,
    # and CPU noise is identical on every device.
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in spec.seeds]

    def step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        # Raising here aborts before the next UNet call and skips the VAE decode; setting
        # pipe._interrupt would still decode the half-finished latents.
        if on_step is not None and on_step(index + 1, pipe.num_timesteps, tensors["latents"]) is False:
            raise RenderCanceled(f"canceled after step {index + 1}")
        return {}

    arguments: dict[str, Any] = {
        "prompt": spec.prompt,
        "negative_prompt": spec.negative_prompt or None,
        "num_inference_steps": spec.steps,
        "guidance_scale": spec.guidance,
        "num_images_per_prompt": len(spec.seeds),
        "generator": generators,
        "callback_on_step_end": step_end,
        "callback_on_step_end_tensor_inputs": ["latents"],
    }
    with model.lock, torch.inference_mode():
        if spec.init_image is None:
            output = model.txt2img(width=spec.width, height=spec.height, **arguments)
        else:
            init = spec.init_image.convert("RGB").resize((spec.width, spec.height), Image.Resampling.LANCZOS)
            if spec.mask_image is None:
                output = model.img2img(image=init, strength=spec.strength, **arguments)
            else:
                mask = spec.mask_image.convert("L").resize(
                    (spec.width, spec.height), Image.Resampling.NEAREST
                )
                output = model.inpaint(
                    image=init,
                    mask_image=mask,
                    strength=spec.strength,
                    width=spec.width,
                    height=spec.height,
                    **arguments,
                )
    return list(output.images)


def render_trivial(spec: RenderSpec, on_step: StepCallback | None = None) -> list[Image.Image]:
    """The "noop" family: no model, flat images from the seed, the same step callbacks. It lets
    benchmarks and tests measure the queue instead of the denoiser."""
    latents = torch.zeros(1, 4, max(1, spec.height // 8), max(1, spec.width // 8))
    steps = spec.denoising_steps
    for step in range(1, steps + 1):
        if on_step is not None and on_step(step, steps, latents) is False:
            raise RenderCanceled(f"canceled after step {step}")
    return [Image.new("RGB", (spec.width, spec.height), seed_color(seed)) for seed in spec.seeds]


def seed_color(seed: int) -> tuple[int, int, int]:
    return (seed * 97 % 256, seed * 57 % 256, seed * 31 % 256)


def latents_to_preview(latents: torch.Tensor, *, max_side: int = 128) -> bytes:
    """JPEG preview of the first latent in the batch; its longer side is scaled to `max_side`."""
    if latents.ndim != 4 or latents.shape[1] != LATENT_RGB_FACTORS.shape[0]:
        raise ValueError(f"expected (batch, 4, h, w) latents, got {tuple(latents.shape)}")
    first = latents[0].detach().to("cpu", torch.float32)
    rgb = torch.einsum("chw,cr->hwr", first, LATENT_RGB_FACTORS)
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

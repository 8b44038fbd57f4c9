"""Per-model speed options, declared in the model registry (``ATELIER_MODELS``).

| option          | default                          | what it does                                      |
|-----------------|----------------------------------|---------------------------------------------------|
| dtype           | float16 on CUDA, float32 on CPU  | weights and activations in float16/bfloat16/float32 |
| channels_last   | off                              | NHWC memory format for the UNet and VAE convolutions |
| compile         | off (minutes of start-up)        | `torch.compile` of the denoiser                    |
| compile_sizes   | none                             | (width, height) pairs compiled at start  |

The compile sizes are warmed at batch 1 and at the model's max batch.

Attention always goes through PyTorch's scaled-dot-product attention (diffusers' default processors
on torch 2), which picks flash or memory-efficient kernels where the device has them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from core.model_catalog import ModelSpec
from gpu_worker.model import LoadedModel, RenderSpec
from gpu_worker.pipeline import render_batch

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class SpeedOptions:
    dtype: str = ""
    channels_last: bool = False
    compile: bool = False
    compile_sizes: tuple[tuple[int, int], ...] = ()
    max_batch: int = 1
    compile_backend: str = "inductor"

    @classmethod
    def of(cls, spec: ModelSpec, compile_backend: str = "inductor") -> SpeedOptions:
        return cls(
            dtype=spec.dtype,
            channels_last=spec.channels_last,
            compile=spec.compile,
            compile_sizes=tuple((int(w), int(h)) for w, h in spec.compile_sizes),
            max_batch=spec.max_batch,
            compile_backend=compile_backend,
        )

    def torch_dtype(self, device: str) -> torch.dtype:
        if self.dtype:
            return DTYPES[self.dtype]
        return torch.float32 if device == "cpu" else torch.float16


def apply_speed_options(model: LoadedModel, options: SpeedOptions) -> float:
    """Apply the options to a freshly loaded model; returns the seconds spent compiling."""
    pipe: Any = model.txt2img
    if options.channels_last:
        model.denoiser.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if not options.compile:
        return 0.0
    started = time.perf_counter()
    model.denoiser.compile(backend=options.compile_backend)
    # Compile now, for the sizes the operator expects, instead of on some user's first job.
    for width, height in options.compile_sizes:
        for batch in sorted({1, max(1, options.max_batch)}):
            specs = [
                RenderSpec(prompt="warm-up", width=width, height=height, steps=2, seeds=[i])
                for i in range(batch)
            ]
            render_batch(model, specs)
    return time.perf_counter() - started

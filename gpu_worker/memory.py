"""What the worker does when a batch does not fit in memory.

The ladder, from cheapest to slowest: split the batch in halves, then slice attention and the VAE
(and tile the VAE), then offload the model to the CPU between components (CUDA only). A job's record
says which rungs it needed.

`MemoryBudget` lets an operator cap the memory a worker may use. On CUDA it caps the process's
allocator, so an overflow is a real out-of-memory error. On the CPU there is no allocator limit to
set, so the budget is checked against an estimate of the largest activation of one step (the
attention scores at the first attention level, or the VAE decoder's full-resolution feature maps),
and a batch over budget raises the same `torch.OutOfMemoryError`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from gpu_worker.model import LoadedModel, RenderSpec

LADDER = ("normal", "sliced", "offload")


def next_mode(mode: str, model: LoadedModel) -> str | None:
    following = LADDER[LADDER.index(mode) + 1] if mode != LADDER[-1] else None
    if following == "offload" and not str(model.device).startswith("cuda"):
        return None  # offloading to the CPU saves nothing when the model is on the CPU already
    return following


def describe_modes(modes: Iterable[str]) -> str:
    """'normal', or the rungs taken in ladder order, e.g. 'split+sliced'."""
    order = ("split", *LADDER[1:])
    taken = [mode for mode in order if mode in set(modes)]
    return "+".join(taken) or "normal"


@contextlib.contextmanager
def memory_mode(model: LoadedModel, mode: str) -> Iterator[None]:
    """Switch the savings of `mode` on for the duration, then restore the model as it was."""
    if mode == "normal":
        yield
        return
    pipe = model.txt2img
    denoiser = model.denoiser
    processors = dict(denoiser.attn_processors)
    if hasattr(denoiser, "set_attention_slice"):  # UNets; transformers attend in one piece
        pipe.enable_attention_slicing("auto")
    pipe.vae.enable_slicing()
    pipe.vae.enable_tiling()
    if mode == "offload":
        pipe.enable_model_cpu_offload(device=model.device)
    try:
        yield
    finally:
        if mode == "offload":
            pipe.remove_all_hooks()
            pipe.to(model.device)
        pipe.vae.disable_tiling()
        pipe.vae.disable_slicing()
        denoiser.set_attn_processor(processors)


def climb(
    model: LoadedModel,
    indexes: list[int],
    attempt: Callable[[list[int], str], None],
    modes: set[str],
    mode: str = "normal",
) -> None:
    """``attempt(indexes, mode)`` renders those jobs of a batch in that mode. On out-of-memory
    split the batch in halves and try each; a single job that still does not fit goes one rung
    down the ladder, until there is none left. ``modes`` collects "split" when it split."""
    try:
        attempt(indexes, mode)
    except torch.OutOfMemoryError:
        release_device_memory(model)
        if len(indexes) > 1:
            modes.add("split")
            half = len(indexes) // 2
            climb(model, indexes[:half], attempt, modes, mode)
            climb(model, indexes[half:], attempt, modes, mode)
            return
        following = next_mode(mode, model)
        if following is None:
            raise
        climb(model, indexes, attempt, modes, following)


def release_device_memory(model: LoadedModel) -> None:
    gc.collect()
    if str(model.device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class MemoryBudget:
    bytes: int

    def apply(self, device: str) -> None:
        """On CUDA, make the allocator refuse to go past the budget."""
        if device.startswith("cuda") and torch.cuda.is_available():
            index = torch.device(device).index or 0
            total = torch.cuda.get_device_properties(index).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, self.bytes / total), index)

    def check(self, model: LoadedModel, specs: list[RenderSpec], mode: str) -> None:
        if str(model.device).startswith("cuda"):
            return  # the allocator enforces it (see apply)
        needed = estimate_bytes(model, specs, mode)
        if needed > self.bytes:
            raise torch.OutOfMemoryError(
                f"a step needs about {needed:,} bytes, over the worker's budget of {self.bytes:,}"
            )


def estimate_bytes(model: LoadedModel, specs: list[RenderSpec], mode: str) -> int:
    """The largest activation of one step of this batch, in bytes (see the module docstring)."""
    pipe: Any = model.txt2img
    first = specs[0]
    images = sum(len(spec.seeds) for spec in specs)
    denoiser = model.denoiser
    element = torch.finfo(denoiser.dtype).bits // 8
    config = denoiser.config
    heads: Any
    if hasattr(config, "down_block_types"):  # a UNet: the first attention level is the widest
        level = next((i for i, kind in enumerate(config.down_block_types) if "Attn" in kind), 0)
        scale = pipe.vae_scale_factor * 2**level
        tokens = (first.height // scale) * (first.width // scale)
        heads = config.attention_head_dim
        heads = int(heads[level] if isinstance(heads, list | tuple) else heads)
        sliced_rows = max(1, heads // 2)  # "auto" slicing: half the heads of one image at a time
    else:  # a transformer: image patches and the text tokens attend together, in one piece
        scale = pipe.vae_scale_factor * int(config.patch_size)
        tokens = (first.height // scale) * (first.width // scale) + 333
        heads = int(config.num_attention_heads)
        sliced_rows = None
    rows = images * (2 if first.guidance > 1 else 1) * heads
    if mode != "normal" and sliced_rows is not None:
        rows = sliced_rows
    attention = rows * tokens * tokens * element
    vae = pipe.vae.config
    tile = int(vae.sample_size) if mode != "normal" else max(first.width, first.height)
    side_w, side_h = min(first.width, tile), min(first.height, tile)
    decoded = 1 if mode != "normal" else images  # VAE slicing decodes one image at a time
    decoder = decoded * int(vae.block_out_channels[0]) * side_w * side_h * element * 4
    return int(max(attention, decoder))

"""LoRA files on a resident model: applied for one render and taken off after, never by reloading
or rewriting the base weights.

A LoRA adds ``weight * alpha / rank * up(down(x))`` to the output of some of the model's linear
and convolution layers. Here each such term is a forward hook on that layer, registered for the
length of a with-block and removed after, so the shared model is exactly as it was (no drift
from merging and unmerging) and jobs without LoRAs pay nothing.

Key layouts read (safetensors):
- kohya (sd-scripts, A1111, Civitai): ``lora_unet_<module path with _>.lora_down.weight``,
  ``.lora_up.weight``, ``.alpha``; ``lora_te_`` (``lora_te1_``/``lora_te2_``) for the text encoders.
- diffusers/PEFT: ``unet.<module path>.lora_A.weight`` / ``.lora_B.weight`` (or ``.lora.down`` /
  ``.lora.up``, ``.lora_down`` / ``.lora_up``, and the old ``processor.to_q_lora.down`` form),
  ``text_encoder.`` and ``text_encoder_2.`` for the text encoders.

Parsed files are kept per device in a small LRU cache (``ATELIER_LORA_CACHE_ENTRIES``), keyed by
path, size and modification time, so a LoRA used again costs no reading.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from django.conf import settings
from safetensors.torch import load_file

from generations.loras import lora_path
from gpu_worker.failures import GenerationFailed

log = logging.getLogger(__name__)

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
KOHYA_PREFIXES = {"lora_unet_": "unet", "lora_te1_": "text_encoder", "lora_te2_": "text_encoder_2"}
KOHYA_PREFIXES["lora_te_"] = "text_encoder"
# (pattern of a key's end, which tensor it is); the module path is what comes before it.
SUFFIXES = [
    (re.compile(r"\.(lora_A|lora\.down|lora_down)\.weight$"), "down"),
    (re.compile(r"\.(lora_B|lora\.up|lora_up)\.weight$"), "up"),
    (re.compile(r"\.alpha$"), "alpha"),
]
OLD_PROCESSOR = re.compile(r"\.processor\.(to_q|to_k|to_v|to_out)_lora$")


class LoraIncompatible(GenerationFailed):
    def __init__(self, message: str) -> None:
        super().__init__("lora_incompatible", message)


@dataclass(frozen=True)
class LoraLayer:
    down: torch.Tensor  # (rank, in) or (rank, in, kh, kw)
    up: torch.Tensor  # (out, rank) or (out, rank, 1, 1)
    scale: float  # alpha / rank


@dataclass
class LoraFile:
    # component (unet, text_encoder, text_encoder_2) -> module path (dotted, or kohya's with _)
    layers: dict[str, dict[str, LoraLayer]] = field(default_factory=dict)

    def to(self, device: torch.device | str, dtype: torch.dtype) -> LoraFile:
        return LoraFile(
            {
                part: {
                    name: LoraLayer(layer.down.to(device, dtype), layer.up.to(device, dtype), layer.scale)
                    for name, layer in modules.items()
                }
                for part, modules in self.layers.items()
            }
        )


def split_key(key: str) -> tuple[str, str, str] | None:
    """(component, module path, down|up|alpha) of one tensor's key; None for keys of no layer."""
    for pattern, kind in SUFFIXES:
        match = pattern.search(key)
        if match is None:
            continue
        module = key[: match.start()]
        for prefix, part in KOHYA_PREFIXES.items():
            if module.startswith(prefix):
                return part, module.removeprefix(prefix), kind
        part, _, module = module.partition(".")
        if part not in COMPONENTS or not module:
            return None
        old = OLD_PROCESSOR.search(module)
        if old is not None:  # attn1.processor.to_out_lora -> attn1.to_out.0
            target = old.group(1)
            module = module[: old.start()] + "." + ("to_out.0" if target == "to_out" else target)
        return part, module, kind
    return None


def parse_lora(state: dict[str, torch.Tensor]) -> LoraFile:
    pieces: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        found = split_key(key)
        if found is not None:
            part, module, kind = found
            pieces.setdefault((part, module), {})[kind] = tensor
    parsed = LoraFile()
    for (part, module), tensors in pieces.items():
        if "down" not in tensors or "up" not in tensors:
            continue
        down, up = tensors["down"].float(), tensors["up"].float()
        rank = down.shape[0]
        alpha = float(tensors["alpha"]) if "alpha" in tensors else float(rank)
        parsed.layers.setdefault(part, {})[module] = LoraLayer(down, up, alpha / rank)
    if not parsed.layers:
        raise LoraIncompatible("The file holds no LoRA layers in a known key layout (kohya or diffusers).")
    return parsed


class LoraCache:
    """Parsed LoRA files by (path, size, mtime) and device, least recently used dropped first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.entries: OrderedDict[tuple[Any, ...], LoraFile] = OrderedDict()
        self.lock = threading.Lock()
        self.reads = 0  # files read from disk (the tests see the cache work)

    def get(self, name: str, device: torch.device, dtype: torch.dtype) -> LoraFile:
        path = lora_path(name)
        if path is None:
            raise GenerationFailed("lora_not_found", f"There is no LoRA named {name!r}.")
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, str(device), dtype)
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                return self.entries[key]
        parsed = read_lora(path).to(device, dtype)
        with self.lock:
            self.reads += 1
            self.entries[key] = parsed
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)
        return parsed


def read_lora(path: Path) -> LoraFile:
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise LoraIncompatible(f"The LoRA file {path.name!r} could not be read: {exc}") from exc
    return parse_lora(state)


_cache: LoraCache | None = None


def lora_cache() -> LoraCache:
    global _cache
    if _cache is None:
        _cache = LoraCache(settings.ATELIER_LORA_CACHE_ENTRIES)
    return _cache


def module_index(component: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The component's layers by dotted path and by kohya's flattened path (dots as _)."""
    index: dict[str, torch.nn.Module] = {}
    for name, module in component.named_modules():
        if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
            index[name] = module
            index.setdefault(name.replace(".", "_"), module)
    return index


def lora_hook(layer: LoraLayer, strength: float) -> Any:
    scale = layer.scale * strength

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        x = inputs[0]
        if isinstance(module, torch.nn.Conv2d):
            down = layer.down if layer.down.dim() == 4 else layer.down[:, :, None, None]
            up = layer.up if layer.up.dim() == 4 else layer.up[:, :, None, None]
            hidden = F.conv2d(x, down, None, module.stride, module.padding, module.dilation)
            delta = F.conv2d(hidden, up)
        else:
            down = layer.down.flatten(1) if layer.down.dim() == 4 else layer.down
            up = layer.up.flatten(1) if layer.up.dim() == 4 else layer.up
            delta = F.linear(F.linear(x, down), up)
        return output + scale * delta.to(output.dtype)

    return hook


def check_shape(name: str, module: torch.nn.Module, layer: LoraLayer) -> None:
    weight = getattr(module, "weight", None)
    assert isinstance(weight, torch.Tensor)
    if layer.up.shape[0] != weight.shape[0] or layer.down.shape[1] != weight.shape[1]:
        raise LoraIncompatible(
            f"The LoRA's layer {name} does not fit this model ({tuple(layer.up.shape[:1])} x "
            f"{tuple(layer.down.shape[1:2])} against {tuple(weight.shape[:2])}): made for another family?"
        )


@contextlib.contextmanager
def applied(
    pipe: Any, loras: Sequence[tuple[str, float]], parts: Sequence[str] = COMPONENTS
) -> Iterator[None]:
    """The LoRAs (name, weight) on the pipeline's components in ``parts`` for the block's length."""
    handles: list[Any] = []
    try:
        for name, strength in loras:
            if strength == 0:
                continue
            hooked = 0
            for part in parts:
                component = getattr(pipe, part, None)
                if component is None:
                    continue
                parameter = next(component.parameters())
                lora = lora_cache().get(name, parameter.device, parameter.dtype)
                index = module_index(component)
                for module_name, layer in lora.layers.get(part, {}).items():
                    module = index.get(module_name)
                    if module is None:
                        continue
                    check_shape(module_name, module, layer)
                    handles.append(module.register_forward_hook(lora_hook(layer, strength)))
                    hooked += 1
            if not hooked and "unet" in parts:
                raise LoraIncompatible(f"The LoRA {name!r} has no layer this model has: another family?")
        yield
    finally:
        for handle in handles:
            handle.remove()


def lora_patch(name: str, strength: float, part: str) -> Any:
    """A workflow's patch (workflows/runtime.py): the LoRA on the loaded model's denoiser
    (``model``) or text encoders (``clip``) for the length of the sampling or encoding."""
    parts = ("unet",) if part == "model" else ("text_encoder", "text_encoder_2")

    def patch(loaded: Any) -> contextlib.AbstractContextManager[None]:
        return applied(loaded.txt2img, [(name, strength)], parts)

    return patch

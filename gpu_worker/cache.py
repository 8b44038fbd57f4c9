"""Resident models: hot on the device, warm in RAM, cold on disk.

`get` returns a hot model. A warm one is moved to the device (a swap, about as fast as the bus); a
cold one is loaded from disk. Least recently used models are demoted hot -> warm -> cold when the
count or byte budgets are exceeded. On a CPU device hot and warm are the same memory, so a demoted
model goes straight to cold. Every load and swap is timed, logged and kept in `events`.

A model is a diffusers directory, or a single-file checkpoint (`.safetensors`, `.ckpt`) loaded with
the configs and tokenizers of its family's diffusers directory (`config`), never from the Hub.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import DiffusionPipeline

from core.model_catalog import is_single_file
from gpu_worker.model import LoadedModel
from gpu_worker.speed import SpeedOptions, apply_speed_options

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheEvent:
    path: str
    kind: str  # "disk" (cold -> hot), "ram" (warm -> hot), "to_ram" (hot -> warm), "drop" (-> cold)
    seconds: float
    at: float


def model_bytes(model: LoadedModel) -> int:
    total = 0
    for component in model.txt2img.components.values():
        if isinstance(component, torch.nn.Module):
            total += sum(p.numel() * p.element_size() for p in component.parameters())
    return total


def absent_components(path: str) -> dict[str, None]:
    """Optional components saved as absent (SD3 without its T5 encoder, say) must be passed as None."""
    index = json.loads((Path(path) / "model_index.json").read_text())
    return {name: None for name, value in index.items() if value == [None, None]}


def load_pipeline(path: str, dtype: torch.dtype, config: str = "") -> Any:
    """The text-to-image pipeline of a diffusers directory or of a single-file checkpoint."""
    if not is_single_file(path):
        # model_index.json names the family's pipeline class: SD 1.x/2.x, SDXL, SD3, ...
        return DiffusionPipeline.from_pretrained(
            path, local_files_only=True, torch_dtype=dtype, **absent_components(path)
        )
    if not config:
        raise ValueError(f"{path} is a single-file checkpoint: it needs its family's diffusers directory")
    class_name = json.loads((Path(config) / "model_index.json").read_text())["_class_name"]
    pipeline_class = getattr(diffusers, class_name)
    # With a local `config`, diffusers reads every config, tokenizer and scheduler from it and every
    # weight from the file; the text encoders too, when the file holds them (else from `config`).
    return pipeline_class.from_single_file(
        path, config=config, local_files_only=True, torch_dtype=dtype, **absent_components(config)
    )


class ModelCache:
    def __init__(
        self,
        device: str = "cpu",
        max_models: int = 2,
        dtype: torch.dtype | None = None,
        *,
        device_budget: int | None = None,
        max_warm: int | None = None,
        ram_budget: int | None = None,
    ) -> None:
        if max_models < 1:
            raise ValueError("max_models must be at least 1")
        self.device = device
        self.max_models = max_models
        self.device_budget = device_budget
        # On the CPU, RAM is the device: nothing to gain from a warm tier unless asked for.
        self.max_warm = max_warm if max_warm is not None else (0 if device == "cpu" else 2)
        self.ram_budget = ram_budget
        self.dtype = dtype or (torch.float32 if device == "cpu" else torch.float16)
        self.loads = 0
        self.events: deque[CacheEvent] = deque(maxlen=100)
        self._hot: OrderedDict[str, LoadedModel] = OrderedDict()
        self._warm: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and os.path.realpath(path) in self._hot

    def paths(self) -> list[str]:
        """Models on the device, least recently used first."""
        return list(self._hot)

    def warm_paths(self) -> list[str]:
        return list(self._warm)

    def get(self, path: str, options: SpeedOptions | None = None, *, config: str = "") -> LoadedModel:
        """The model at `path` on the device; `options` (and for a single file, the family's diffusers
        directory `config`) apply when it has to be loaded from disk."""
        key = os.path.realpath(path)
        with self._lock:
            model = self._hot.get(key)
            if model is not None:
                self._hot.move_to_end(key)
                return model
            model = self._warm.pop(key, None)  # before making room, which may drop warm models
            # Make room first, so two large models never need to fit on the device at once.
            while len(self._hot) >= self.max_models:
                self._demote_oldest()
            if model is not None:
                self._to_device(model)
            else:
                # Loaded from the path as given: a single file's suffix says its format, and a
                # symlinked one (a hub cache blob) has none once resolved.
                model = self._load(key, options or SpeedOptions(), config, source=path)
            self._hot[key] = model
            while len(self._hot) > 1 and self._over(self.device_budget, self._hot):
                self._demote_oldest()
            return model

    def clear(self) -> None:
        with self._lock:
            self._hot.clear()
            self._warm.clear()
            self._release_memory()

    @staticmethod
    def _over(budget: int | None, models: OrderedDict[str, LoadedModel]) -> bool:
        return budget is not None and sum(model_bytes(m) for m in models.values()) > budget

    def _load(self, path: str, options: SpeedOptions, config: str, *, source: str = "") -> LoadedModel:
        started = time.perf_counter()
        dtype = self.dtype if not options.dtype else options.torch_dtype(self.device)
        pipe = load_pipeline(source or path, dtype, config)
        if getattr(pipe, "safety_checker", None) is not None:
            pipe.safety_checker = None  # moderation happens on the prompt, at submission
        pipe = pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        model = LoadedModel(path=path, txt2img=pipe, load_seconds=0.0, device=self.device)
        model.fit_preview()
        compile_seconds = apply_speed_options(model, options)
        if options.compile:
            self._record(path, "compile", compile_seconds)
        self.loads += 1
        model.load_seconds = time.perf_counter() - started
        self._record(path, "disk", model.load_seconds)
        return model

    def _to_device(self, model: LoadedModel) -> None:
        started = time.perf_counter()
        model.txt2img.to(self.device)
        model.device = self.device
        model.load_seconds = time.perf_counter() - started
        self._record(model.path, "ram", model.load_seconds)

    def _demote_oldest(self) -> None:
        key, model = self._hot.popitem(last=False)
        if self.max_warm > 0:
            started = time.perf_counter()
            model.txt2img.to("cpu")
            model.device = "cpu"
            self._warm[key] = model
            self._record(key, "to_ram", time.perf_counter() - started)
            while self._warm and (len(self._warm) > self.max_warm or self._over(self.ram_budget, self._warm)):
                dropped, _ = self._warm.popitem(last=False)
                self._record(dropped, "drop", 0.0)
        else:
            self._record(key, "drop", 0.0)
        self._release_memory()

    def _record(self, path: str, kind: str, seconds: float) -> None:
        self.events.append(CacheEvent(path=path, kind=kind, seconds=seconds, at=time.time()))
        log.info("model %s: %s in %.3f s", path, kind, seconds)

    def _release_memory(self) -> None:
        gc.collect()
        if self.device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()

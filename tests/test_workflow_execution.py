"""The executor and the core nodes on the tiny model, in-process on the CPU (no server): every
advertised sampler and scheduler runs, inpainting keeps what is not masked, denoise and the
advanced sampler's window take the steps ComfyUI takes, and a cancel stops within a step."""

from __future__ import annotations

import contextlib
import copy
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gpu_worker.cache import ModelCache
from gpu_worker.model import LoadedModel
from gpu_worker.tiny_families import build_family
from gpu_worker.tiny_model import ensure_tiny_model
from tests.comfy_support import txt2img
from workflows import runtime, scope
from workflows.executor import Outcome, OutputCache, run_prompt
from workflows.registry import registry
from workflows.samplers import SAMPLER_NAMES, SCHEDULER_NAMES
from workflows.validation import validate_prompt

CHECKPOINT = "tiny"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    path = tmp_path_factory.mktemp("models") / "tiny-sd"
    assert ensure_tiny_model(path)
    return ModelCache(device="cpu", max_models=1).get(str(path))


class Worker:
    """The runtime and listener a worker gives the executor, recording what it was told."""

    device = "cpu"

    def __init__(
        self, model: LoadedModel, inputs: dict[str, Image.Image] | None = None, stop_at: int = 0
    ) -> None:
        self.model = model
        self.inputs = inputs or {}
        self.stop_at = stop_at
        self.saved: list[Image.Image] = []
        self.events: list[tuple[str, Any]] = []
        self.steps: list[tuple[int, int]] = []

    def load_checkpoint(self, name: str) -> LoadedModel:
        return self.model

    def load_input(self, name: str) -> Image.Image:
        return self.inputs[name]

    def save_images(self, images: list[Image.Image], **options: Any) -> list[dict[str, str]]:
        self.saved += images
        return [{"filename": f"{len(self.saved)}.png", "subfolder": "", "type": options["kind"]}]

    def send_image(self, picture: Image.Image) -> None:
        self.events.append(("image", picture.size))

    def progress(self, value: int, total: int, latents: Any = None) -> bool:
        self.steps.append((value, total))
        return not (self.stop_at and len(self.steps) >= self.stop_at)

    def cached(self, nodes: list[str]) -> None:
        self.events.append(("cached", nodes))

    def executing(self, node_id: str) -> None:
        self.events.append(("executing", node_id))

    def executed(self, node_id: str, ui: dict[str, Any]) -> None:
        self.events.append(("executed", node_id))


def run(graph: dict[str, Any], worker: Worker, files: dict[str, tuple[int, int]] | None = None) -> Outcome:
    with scope.using(scope.Scope(checkpoints=(CHECKPOINT,), input_files=files or {})):
        valid = validate_prompt(graph)
    return run_prompt(valid.prompt, valid.outputs, worker=worker, cache=OutputCache())


@pytest.mark.parametrize(
    ("sampler", "scheduler"),
    [(s, "normal") for s in SAMPLER_NAMES] + [("dpmpp_2m", s) for s in SCHEDULER_NAMES if s != "normal"],
)
def test_every_advertised_sampler_and_scheduler_runs(
    model: LoadedModel, sampler: str, scheduler: str
) -> None:
    worker = Worker(model)
    graph = txt2img(CHECKPOINT, **{"3.sampler_name": sampler, "3.scheduler": scheduler, "3.steps": 3})
    outcome = run(graph, worker)
    assert outcome.status == "success", outcome.exception_message
    assert worker.steps[-1] == (3, 3)
    picture = np.asarray(worker.saved[0], dtype=np.float32)
    assert picture.shape == (64, 64, 3) and np.isfinite(picture).all()


def test_denoise_runs_the_last_steps_of_a_longer_schedule(model: LoadedModel) -> None:
    worker = Worker(model)
    assert run(txt2img(CHECKPOINT, **{"3.denoise": 0.5, "3.steps": 4}), worker).status == "success"
    assert worker.steps[-1] == (4, 4)  # ComfyUI: steps are what runs, denoise stretches the schedule


def test_the_advanced_sampler_runs_its_window_of_steps(model: LoadedModel) -> None:
    graph = txt2img(CHECKPOINT)
    graph["3"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            **{k: v for k, v in graph["3"]["inputs"].items() if k not in ("seed", "denoise")},
            "add_noise": "enable",
            "noise_seed": 1,
            "steps": 10,
            "start_at_step": 3,
            "end_at_step": 7,
            "return_with_leftover_noise": "enable",
        },
    }
    worker = Worker(model)
    assert run(graph, worker).status == "success"
    assert worker.steps[-1] == (4, 4)


def inpaint_graph(node: str) -> dict[str, Any]:
    graph = txt2img(CHECKPOINT, **{"3.latent_image": ["20", 0]})
    graph["10"] = {"class_type": "LoadImage", "inputs": {"image": "source.png"}}
    if node == "SetLatentNoiseMask":
        graph["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
        graph["20"] = {
            "class_type": "SetLatentNoiseMask",
            "inputs": {"samples": ["11", 0], "mask": ["10", 1]},
        }
    else:
        graph["20"] = {
            "class_type": "VAEEncodeForInpaint",
            "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["10", 1], "grow_mask_by": 0},
        }
    return graph


@pytest.mark.parametrize("node", ["SetLatentNoiseMask", "VAEEncodeForInpaint"])
def test_inpainting_repaints_only_the_masked_part(model: LoadedModel, node: str) -> None:
    source = Image.new("RGBA", (64, 64), (30, 160, 220, 255))
    hole = Image.new("RGBA", (32, 64), (0, 0, 0, 0))
    source.paste(hole, (32, 0))  # transparent right half: LoadImage's MASK is 1 there
    worker = Worker(model, {"source.png": source})
    outcome = run(inpaint_graph(node), worker, files={"source.png": (64, 64)})
    assert outcome.status == "success", outcome.exception_message
    out = np.asarray(worker.saved[0], dtype=np.float32)
    if node == "SetLatentNoiseMask":
        # The kept half comes back from the source through the VAE: close to the source colour,
        # unlike the repainted half, which the (random) model paints freely.
        kept = np.abs(out[:, :24] - np.array([30, 160, 220])).mean()
        repainted = np.abs(out[:, 40:] - np.array([30, 160, 220])).mean()
        assert kept < repainted


def test_a_cancel_stops_the_sampler_within_a_step(model: LoadedModel) -> None:
    worker = Worker(model, stop_at=2)
    outcome = run(txt2img(CHECKPOINT, **{"3.steps": 20}), worker)
    assert outcome.status == "interrupted" and outcome.node_id == "3"
    assert len(worker.steps) == 2 and worker.saved == []


def test_a_second_run_reuses_encoded_text_and_the_empty_latent(model: LoadedModel) -> None:
    cache = OutputCache()
    graph = txt2img(CHECKPOINT)
    with scope.using(scope.Scope(checkpoints=(CHECKPOINT,))):
        valid = validate_prompt(graph)
    first, second = Worker(model), Worker(model)
    run_prompt(valid.prompt, valid.outputs, worker=first, cache=cache)
    changed = copy.deepcopy(valid.prompt)
    changed["3"]["inputs"]["seed"] = 99
    outcome = run_prompt(changed, valid.outputs, worker=second, cache=cache)
    assert set(outcome.cached) == {"5", "6", "7"}
    assert ("executing", "6") not in second.events and ("executing", "3") in second.events


def test_save_image_websocket_sends_each_picture(model: LoadedModel) -> None:
    graph = txt2img(CHECKPOINT, **{"5.batch_size": 2})
    graph["9"] = {"class_type": "SaveImageWebsocket", "inputs": {"images": ["8", 0]}}
    worker = Worker(model)
    assert run(graph, worker).status == "success"
    assert [e for e in worker.events if e[0] == "image"] == [("image", (64, 64))] * 2


def test_image_scaling_nodes_give_the_sizes_asked(model: LoadedModel) -> None:
    graph = txt2img(CHECKPOINT)
    graph["10"] = {
        "class_type": "ImageScale",
        "inputs": {
            "image": ["8", 0],
            "upscale_method": "bilinear",
            "width": 96,
            "height": 0,
            "crop": "disabled",
        },
    }
    graph["11"] = {
        "class_type": "ImageScaleBy",
        "inputs": {"image": ["10", 0], "upscale_method": "lanczos", "scale_by": 0.5},
    }
    graph["9"]["inputs"]["images"] = ["11", 0]
    worker = Worker(model)
    assert run(graph, worker).status == "success"
    assert worker.saved[0].size == (48, 48)


class RecordingPatch:
    """What a LoRA loader would hand down: a patch applied around sampling, then taken off."""

    calls: list[str] = []

    @classmethod
    @contextlib.contextmanager
    def apply(cls, loaded: Any) -> Iterator[None]:
        cls.calls.append("on")
        try:
            yield
        finally:
            cls.calls.append("off")


class PatchModel:
    CATEGORY = "test"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",)}}

    def patch(self, model: runtime.ModelHandle) -> tuple[runtime.ModelHandle]:
        return (model.with_patch(RecordingPatch.apply),)


def test_a_node_can_patch_the_model_for_its_samplers_only(
    model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry().classes, "PatchModel", PatchModel)
    RecordingPatch.calls = []
    graph = txt2img(CHECKPOINT, **{"3.model": ["10", 0]})
    graph["10"] = {"class_type": "PatchModel", "inputs": {"model": ["4", 0]}}
    worker = Worker(model)
    assert run(graph, worker).status == "success"
    assert RecordingPatch.calls == ["on", "off"]  # around the sampling, not left on the shared model


@pytest.mark.parametrize("family", ["sd2", "sdxl", "sdxl-turbo"])
def test_the_other_unet_families_run_the_same_graph(family: str, tmp_path: pathlib.Path) -> None:
    build_family(family, tmp_path / family)
    loaded = ModelCache(device="cpu", max_models=1).get(str(tmp_path / family))
    worker = Worker(loaded)
    outcome = run(txt2img(CHECKPOINT, **{"3.steps": 2}), worker)
    assert outcome.status == "success", outcome.exception_message
    assert worker.saved[0].size == (64, 64)

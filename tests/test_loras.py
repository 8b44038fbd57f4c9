"""LoRA files of the folder (ATELIER_LORA_DIR), in kohya's and diffusers' key layouts, on the
built-in model: listed for ComfyUI's lora_name and in GET /api/v1/models, validated on REST
submissions, applied for one render (a visible change at weight 1, none at 0) and taken off after
without reloading the model, kept in the worker's LoRA cache, and batched only with their like.

The LoRA is made here: small random weights for the UNet's attention projections."""

from __future__ import annotations

import io
import pathlib
import uuid
from typing import Any

import numpy as np
import pytest
import torch
from django.conf import settings
from django.test import Client
from PIL import Image
from safetensors.torch import save_file

from accounts.models import User
from accounts.services import api_key_create
from generations.models import Generation
from gpu_worker.batching import batch_key
from gpu_worker.cache import ModelCache
from gpu_worker.loras import lora_cache, lora_patch
from gpu_worker.model import LoadedModel, RenderSpec
from gpu_worker.pipeline import render
from gpu_worker.rendering import render_spec
from tests.comfy_support import saved_image, txt2img
from tests.conftest import ApiUser
from workflows import scope
from workflows.executor import OutputCache, run_prompt
from workflows.validation import PromptInvalid, validate_prompt

MODEL = settings.ATELIER_DEFAULT_MODEL
ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")


@pytest.fixture(scope="module")
def demo() -> LoadedModel:
    return ModelCache(device="cpu", max_models=1).get(settings.ATELIER_MODELS[MODEL].path)


def make_lora(model: LoadedModel, path: pathlib.Path, layout: str, rank: int = 4, seed: int = 0) -> None:
    """Random LoRA weights for every attention projection of the model's UNet, in ``layout``."""
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in model.txt2img.unet.named_modules():
        if not (isinstance(module, torch.nn.Linear) and name.endswith(ATTENTION)):
            continue
        down = torch.randn(rank, module.in_features, generator=generator) / module.in_features**0.5
        up = torch.randn(module.out_features, rank, generator=generator) * 0.5
        if layout == "kohya":
            key = "lora_unet_" + name.replace(".", "_")
            tensors[f"{key}.lora_down.weight"] = down
            tensors[f"{key}.lora_up.weight"] = up
            tensors[f"{key}.alpha"] = torch.tensor(float(rank))
        else:
            tensors[f"unet.{name}.lora_A.weight"] = down
            tensors[f"unet.{name}.lora_B.weight"] = up
    assert tensors, "the built-in model's UNet has attention layers"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


@pytest.fixture
def lora_dir(tmp_path: pathlib.Path, settings: Any, demo: LoadedModel) -> pathlib.Path:
    settings.ATELIER_LORA_DIR = tmp_path / "loras"
    settings.ATELIER_BUILTIN_LORA_DIR = ""  # only these two (the shipped one: test_demo_lora_live.py)
    make_lora(demo, tmp_path / "loras" / "kohya-style.safetensors", "kohya", seed=1)
    make_lora(demo, tmp_path / "loras" / "styles" / "diffusers-style.safetensors", "diffusers", seed=2)
    return tmp_path / "loras"


def pixels(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture.convert("RGB")).astype(float)


def spec(*loras: tuple[str, float]) -> RenderSpec:
    return RenderSpec(
        prompt="a red circle on a blue background", width=128, height=128, steps=4, seeds=[3], loras=loras
    )


@pytest.mark.parametrize("name", ["kohya-style.safetensors", "styles/diffusers-style.safetensors"])
def test_a_lora_changes_the_image_at_weight_1_and_not_at_0_and_comes_off_after(
    demo: LoadedModel, lora_dir: pathlib.Path, name: str
) -> None:
    weights = {k: v.clone() for k, v in demo.txt2img.unet.state_dict().items()}
    plain = pixels(render(demo, spec())[0])
    at_zero = pixels(render(demo, spec((name, 0.0)))[0])
    at_one = pixels(render(demo, spec((name, 1.0)))[0])
    after = pixels(render(demo, spec())[0])
    assert np.array_equal(plain, at_zero)
    assert np.abs(at_one - plain).mean() > 5.0  # of 255: visibly another picture
    assert np.array_equal(plain, after)  # taken off: the shared model is as it was
    assert all(torch.equal(weights[k], v) for k, v in demo.txt2img.unet.state_dict().items())


def test_a_used_lora_is_kept_in_the_cache(demo: LoadedModel, lora_dir: pathlib.Path) -> None:
    name = "kohya-style.safetensors"
    render(demo, spec((name, 0.5)))
    reads = lora_cache().reads
    render(demo, spec((name, 0.8)))
    assert lora_cache().reads == reads


def test_a_lora_of_another_model_fails_the_render_with_its_code(
    demo: LoadedModel, lora_dir: pathlib.Path
) -> None:
    save_file(
        {"unet.nowhere.lora_A.weight": torch.zeros(4, 8), "unet.nowhere.lora_B.weight": torch.zeros(8, 4)},
        str(lora_dir / "other.safetensors"),
    )
    with pytest.raises(Exception) as failure:
        render(demo, spec(("other.safetensors", 1.0)))
    assert getattr(failure.value, "code", "") == "lora_incompatible"


class LoraWorker:
    """What the worker gives the executor, with its LoRA patches (gpu_worker.loras.lora_patch)."""

    device = "cpu"

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.saved: list[Image.Image] = []

    def load_checkpoint(self, name: str) -> LoadedModel:
        return self.model

    def lora_patch(self, name: str, strength: float, part: str) -> Any:
        return lora_patch(name, strength, part)

    def save_images(self, images: list[Image.Image], **options: Any) -> list[dict[str, str]]:
        self.saved += images
        return [{"filename": f"{len(self.saved)}.png", "subfolder": "", "type": options["kind"]}]

    def progress(self, value: int, total: int, latents: Any = None) -> bool:
        return True

    def cached(self, nodes: list[str]) -> None: ...

    def executing(self, node_id: str) -> None: ...

    def executed(self, node_id: str, ui: dict[str, Any]) -> None: ...


def run_graph(model: LoadedModel, graph: dict[str, Any]) -> np.ndarray:
    available = scope.Scope(checkpoints=(MODEL,), loras=("kohya-style.safetensors",))
    with scope.using(available):
        valid = validate_prompt(graph)
    worker = LoraWorker(model)
    outcome = run_prompt(valid.prompt, valid.outputs, worker=worker, cache=OutputCache())
    assert outcome.status == "success", outcome.exception_message
    assert worker.saved[0].size == (128, 128)
    return pixels(worker.saved[0])


@pytest.mark.parametrize("node", ["LoraLoader", "LoraLoaderModelOnly"])
def test_the_lora_loader_nodes_patch_the_sampling(
    demo: LoadedModel, lora_dir: pathlib.Path, node: str
) -> None:
    plain = txt2img(MODEL, **{"5.width": 128, "5.height": 128})
    with_lora = txt2img(MODEL, **{"5.width": 128, "5.height": 128, "3.model": ["10", 0]})
    inputs: dict[str, Any] = {
        "model": ["4", 0],
        "lora_name": "kohya-style.safetensors",
        "strength_model": 1.0,
    }
    if node == "LoraLoader":
        inputs |= {"clip": ["4", 1], "strength_clip": 1.0}
        for encoder in ("6", "7"):
            with_lora[encoder]["inputs"]["clip"] = ["10", 1]
    with_lora["10"] = {"class_type": node, "inputs": inputs}
    before = run_graph(demo, plain)
    patched = run_graph(demo, with_lora)
    assert np.abs(patched - before).mean() > 5.0
    assert np.array_equal(run_graph(demo, plain), before)  # taken off after the sampling


def test_an_unknown_lora_name_is_refused_as_comfyui_does() -> None:
    graph = txt2img(MODEL, **{"3.model": ["10", 0]})
    graph["10"] = {
        "class_type": "LoraLoaderModelOnly",
        "inputs": {"model": ["4", 0], "lora_name": "nope.safetensors", "strength_model": 1.0},
    }
    with (
        scope.using(scope.Scope(checkpoints=(MODEL,), loras=("kohya-style.safetensors",))),
        pytest.raises(PromptInvalid) as refused,
    ):
        validate_prompt(graph)
    assert refused.value.body["node_errors"]["10"]["errors"][0]["type"] == "value_not_in_list"


def api_client() -> Client:
    user = User.objects.create_user(f"lora-{uuid.uuid4().hex[:8]}", password="x")
    _, key = api_key_create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


@pytest.mark.django_db
def test_the_loras_are_listed_for_rest_and_comfyui_clients(lora_dir: pathlib.Path) -> None:
    api = api_client()
    expected = ["kohya-style.safetensors", "styles/diffusers-style.safetensors"]
    assert api.get("/api/v1/models").json()["loras"] == expected
    assert api.get("/models/loras").json() == expected  # ComfyUI's folder listing
    info = api.get("/object_info/LoraLoader").json()["LoraLoader"]
    assert info["input"]["required"]["lora_name"][0] == expected
    assert info["output"] == ["MODEL", "CLIP"] and info["category"] == "loaders"


@pytest.mark.django_db
def test_a_rest_submission_takes_loras_and_refuses_unknown_ones_and_bad_weights(
    lora_dir: pathlib.Path,
) -> None:
    api = api_client()

    def submit(loras: Any) -> Any:
        body = {"prompt": "a red circle", "model": MODEL, "loras": loras}
        return api.post("/api/v1/generations", body, content_type="application/json")

    unknown = submit([{"name": "missing.safetensors", "weight": 1}])
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "lora_not_found"
    for bad in ([{"name": "../kohya-style.safetensors"}], [{"name": "kohya-style.safetensors", "weight": 9}]):
        assert submit(bad).status_code == 400, bad
    twice = [{"name": "kohya-style.safetensors"}, {"name": "kohya-style.safetensors", "weight": 0.5}]
    assert submit(twice).status_code == 400
    assert not Generation.objects.exists()  # nothing stored (or held)
    accepted = submit([{"name": "styles/diffusers-style.safetensors", "weight": 0.7}])
    assert accepted.status_code == 202, accepted.content
    generation = Generation.objects.get(pk=accepted.json()["id"])
    assert generation.loras == [{"name": "styles/diffusers-style.safetensors", "weight": 0.7}]


def test_only_jobs_with_the_same_lora_set_share_a_batch() -> None:
    def job(*loras: tuple[str, float]) -> Generation:
        fields = {"model_name": MODEL, "kind": "txt2img", "width": 256, "height": 256, "steps": 20}
        listed = [{"name": name, "weight": weight} for name, weight in loras]
        return Generation(**fields, guidance=7.0, sampler="default", loras=listed)

    a, b = ("a.safetensors", 1.0), ("b.safetensors", 0.5)
    assert batch_key(job(a, b)) == batch_key(job(b, a))
    assert batch_key(job(a)) != batch_key(job(a, b)) != batch_key(job())
    assert batch_key(job(a)) != batch_key(job(("a.safetensors", 0.9)))
    assert spec(a).shared() != spec().shared()


def test_a_generations_loras_reach_its_render_spec() -> None:
    job = Generation(prompt="x", width=256, height=256, steps=4, guidance=7.0, seed=1, n=1)
    job.loras = [{"name": "styles/a.safetensors", "weight": 0.25}]
    assert render_spec(job).loras == (("styles/a.safetensors", 0.25),)


@pytest.mark.live
def test_a_rest_generation_renders_with_its_lora_on_a_real_worker(alice: ApiUser, demo: LoadedModel) -> None:
    name = f"live-{uuid.uuid4().hex[:8]}.safetensors"
    path = pathlib.Path(settings.ATELIER_LORA_DIR) / name  # the worker's folder too (conftest)
    make_lora(demo, path, "diffusers", seed=4)

    def image(*weight: float) -> np.ndarray:
        loras = [{"name": name, "weight": w} for w in weight]
        body = {"prompt": "a red circle", "model": MODEL, "width": 128, "height": 128, "steps": 4, "seed": 5}
        body["guidance"] = 7.0  # a random LoRA's effect at the built-in model's default 3 is subtler
        response = alice.post("/api/v1/generations", json={**body, "loras": loras})
        assert response.status_code == 202, response.text
        done = alice.wait_until_done(response.json()["id"])
        assert done["status"] == "succeeded", done
        return pixels(Image.open(io.BytesIO(alice.get(done["images"][0]["url"]).content)))

    try:
        plain, at_zero, at_one = image(), image(0.0), image(1.0)
    finally:
        path.unlink()
    assert np.array_equal(plain, at_zero)
    assert np.abs(at_one - plain).mean() > 5.0


@pytest.mark.live
def test_a_lora_loader_runs_through_prompt_on_a_real_worker(alice: ApiUser, demo: LoadedModel) -> None:
    name = f"live-{uuid.uuid4().hex[:8]}.safetensors"
    path = pathlib.Path(settings.ATELIER_LORA_DIR) / name
    make_lora(demo, path, "kohya", seed=6)

    def image(graph: dict[str, Any]) -> np.ndarray:
        return pixels(saved_image(alice, graph))

    plain = txt2img(MODEL, **{"5.width": 128, "5.height": 128})
    patched = txt2img(MODEL, **{"5.width": 128, "5.height": 128, "3.model": ["10", 0]})
    patched["10"] = {
        "class_type": "LoraLoaderModelOnly",
        "inputs": {"model": ["4", 0], "lora_name": name, "strength_model": 1.0},
    }
    try:
        assert name in alice.get("/models/loras").json()
        before, after = image(plain), image(patched)
    finally:
        path.unlink()
    assert before.shape == (128, 128, 3) and np.abs(after - before).mean() > 5.0

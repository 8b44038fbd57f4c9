"""The built-in model's monochrome LoRA, trained by the project (demo_model/lora_training.py): shipped
with a manifest that matches it, in a key layout the worker's loader reads onto the built-in
model, listed beside the LoRA folder's own files; and its training seeded and resumable.

What it does to pictures is measured on a real worker in test_demo_lora_live.py."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import torch
from django.conf import settings
from safetensors.torch import load_file

from demo_model import manifest
from demo_model.draw import render
from demo_model.lora_training import LoraPlan, colourfulness, monochrome, train_lora
from demo_model.world import Group, Picture
from generations.loras import available_loras, lora_path
from gpu_worker.cache import ModelCache
from gpu_worker.loras import check_shape, module_index, parse_lora

SHIPPED = pathlib.Path(settings.ATELIER_BUILTIN_LORA_DIR)
NAME = "atelier-demo-monochrome.safetensors"


def test_the_shipped_lora_matches_its_manifest_and_is_small() -> None:
    path = SHIPPED / NAME
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] == manifest.sha256(path) and record["bytes"] == path.stat().st_size
    assert path.stat().st_size < 1_000_000
    assert record["base_model_manifest_sha256"] == manifest.sha256(manifest.MANIFEST)
    recipe = record["recipe"]
    assert recipe["style"] == "monochrome" and recipe["steps"] > 0 and recipe["rank"] > 0
    assert recipe["loss_last_50"] < recipe["loss_first_50"]  # it learned


def test_the_shipped_lora_fits_every_layer_it_names_on_the_built_in_model() -> None:
    demo = ModelCache(device="cpu", max_models=1).get(
        settings.ATELIER_MODELS[settings.ATELIER_DEFAULT_MODEL].path
    )
    parsed = parse_lora(load_file(str(SHIPPED / NAME)))
    assert set(parsed.layers) == {"unet"}
    index = module_index(demo.txt2img.unet)
    for name, layer in parsed.layers["unet"].items():
        check_shape(name, index[name], layer)  # raises lora_incompatible otherwise
    assert any(name.endswith("attn2.to_v") for name in parsed.layers["unet"])


def test_shipped_loras_are_listed_beside_the_folders_which_wins_a_clash(
    tmp_path: pathlib.Path, settings: Any
) -> None:
    settings.ATELIER_LORA_DIR = tmp_path
    assert NAME in available_loras() and lora_path(NAME) == SHIPPED / NAME
    (tmp_path / "mine.safetensors").write_bytes(b"x")
    (tmp_path / NAME).write_bytes(b"y")
    assert available_loras() == sorted(["mine.safetensors", NAME])
    assert lora_path(NAME) == tmp_path / NAME
    assert lora_path("../loras/" + NAME) is None and lora_path(str(SHIPPED / NAME)) is None
    settings.ATELIER_BUILTIN_LORA_DIR = ""
    (tmp_path / NAME).unlink()
    assert available_loras() == ["mine.safetensors"] and lora_path(NAME) is None


def test_monochrome_greys_a_picture_and_colourfulness_tells_it_apart() -> None:
    picture = render(Picture(colours=("blue",), groups=(Group("red", "circle", "big", "centre"),)))
    assert colourfulness(picture) > 20.0
    assert colourfulness(monochrome(picture)) < 0.5


def tensors_after(workdir: pathlib.Path, *steps: int) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for count in steps:
        plan = LoraPlan(workdir=workdir, pictures=6, steps=count, batch=2, rank=2, log=lambda _: None)
        tensors, _ = train_lora(plan)
    return tensors


def test_training_is_seeded_and_resumes_where_it_stopped(tmp_path: pathlib.Path) -> None:
    torch.set_num_threads(1)
    straight = tensors_after(tmp_path / "straight", 3)
    resumed = tensors_after(tmp_path / "resumed", 2, 3)  # stopped after 2 steps, then run on
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)
    assert any(t.abs().sum() > 0 for key, t in straight.items() if "lora_B" in key)  # it moved

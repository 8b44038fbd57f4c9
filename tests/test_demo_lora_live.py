"""The shipped monochrome LoRA on a real gpu_worker: the same prompt and seed with the LoRA at
weight 1 come out in greys (each pixel near the grey of its own brightness), at weight 0 exactly
as without it; through the REST API and through ComfyUI's LoraLoader."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from PIL import Image

from demo_model.lora_training import colourfulness
from tests.comfy_support import saved_image, txt2img
from tests.conftest import ApiUser

pytestmark = pytest.mark.live

MODEL = settings.ATELIER_DEFAULT_MODEL
NAME = "atelier-demo-monochrome.safetensors"
PROMPT = "a yellow star on a green background"


def pictures(user: ApiUser, *loras: dict[str, Any]) -> list[Image.Image]:
    body = {"prompt": PROMPT, "model": MODEL, "seed": 1, "n": 1, "cache": False, "loras": list(loras)}
    response = user.post("/api/v1/generations", json=body)
    assert response.status_code == 202, response.text
    done = user.wait_until_done(response.json()["id"])
    assert done["status"] == "succeeded", done
    assert (done["width"], done["steps"]) == (256, 20)  # the model's defaults, guidance too
    return [Image.open(io.BytesIO(user.get(i["url"]).content)).convert("RGB") for i in done["images"]]


def distance(images: list[Image.Image]) -> float:
    return float(np.mean([colourfulness(image) for image in images]))


def test_the_shipped_lora_is_offered_to_rest_and_comfyui_clients(alice: ApiUser) -> None:
    assert NAME in alice.get("/api/v1/models").json()["loras"]
    assert NAME in alice.get("/models/loras").json()
    info = alice.get("/object_info/LoraLoader").json()["LoraLoader"]
    assert NAME in info["input"]["required"]["lora_name"][0]


def test_the_monochrome_lora_greys_the_same_picture_and_weight_0_changes_nothing(alice: ApiUser) -> None:
    plain = pictures(alice)
    at_zero = pictures(alice, {"name": NAME, "weight": 0.0})
    at_one = pictures(alice, {"name": NAME, "weight": 1.0})
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(plain, at_zero, strict=True))
    before, after = distance(plain), distance(at_one)
    print(f"colourfulness without the LoRA {before:.1f}, with it {after:.1f}")
    assert before > 30.0  # the world's saturated colours
    assert after < 0.5 * before  # markedly greyer, the direction it was trained for


def test_a_lora_loader_graph_greys_the_picture_too(alice: ApiUser) -> None:
    sizes: dict[str, Any] = {"5.width": 256, "5.height": 256, "3.steps": 20, "3.cfg": 3.0, "3.seed": 1}
    sizes["6.text"] = "a lighthouse at dusk"
    sizes["3.sampler_name"], sizes["3.scheduler"] = "dpmpp_2m", "normal"
    plain = txt2img(MODEL, **sizes)
    greyed = txt2img(MODEL, **sizes, **{"3.model": ["10", 0], "6.clip": ["10", 1], "7.clip": ["10", 1]})
    greyed["10"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "model": ["4", 0],
            "clip": ["4", 1],
            "lora_name": NAME,
            "strength_model": 1.0,
            "strength_clip": 1.0,
        },
    }
    before, after = colourfulness(saved_image(alice, plain)), colourfulness(saved_image(alice, greyed))
    print(f"LoraLoader: colourfulness without {before:.1f}, with {after:.1f}")
    assert after < 0.5 * before

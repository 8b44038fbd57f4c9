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
    # The whole judge: blue background, one red object, in the centre, round enough for a circle.
    expected = {"background": True, "colour": True, "position": True, "count": True, "shape": True}
    assert all(verdict == expected for verdict in verdicts), verdicts
    # Four seeds, four arrangements of the same request.
    pictures = [np.asarray(picture(alice, image), dtype=np.float32) for image in done["images"]]
    assert min(np.abs(a - b).mean() for a, b in itertools.pairwise(pictures)) > 1.0


def upload(user: ApiUser, image: Image.Image) -> str:
    data = io.BytesIO()
    image.save(data, format="PNG")
    response = user.post("/api/v1/uploads", files={"file": ("f.png", data.getvalue(), "image/png")})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_inpainting_a_green_square_puts_it_in_the_mask_and_leaves_the_rest(alice: ApiUser) -> None:
    # A yellow block in the top left that a fresh picture of the prompt would not have.
    source = Image.new("RGB", (256, 256), COLOURS["blue"])
    source.paste(COLOURS["yellow"], (16, 16, 48, 48))
    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (64, 64, 192, 192))  # white: repaint the middle
    done = generate(
        alice,
        "a green square on a blue background",
        input_image=upload(alice, source),
        mask_image=upload(alice, mask),
        n=2,
    )
    kept = np.ones((256, 256), dtype=bool)
    kept[48:208, 48:208] = False  # the mask and a margin around it
    green = PALETTE.index("green")
    for image in done["images"]:
        result = picture(alice, image)
        names = nearest_colours(np.asarray(result, dtype=np.float32))
        assert (names[64:192, 64:192] == green).mean() > 0.1  # a green object where the mask was
        assert (names[kept] == green).mean() < 0.01
        difference = np.abs(np.asarray(result, dtype=np.float32) - np.asarray(source, dtype=np.float32))
        assert difference[kept].mean() < 12, difference[kept].mean()
        assert dominant_colour(result, (20, 20, 44, 44)) == "yellow"


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

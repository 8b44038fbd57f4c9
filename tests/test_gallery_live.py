"""Image actions end to end with real web and gpu_worker processes: each child is rendered from its
parent's pixels and records its lineage."""

from __future__ import annotations

import io
from typing import Any

import pytest
import requests
from PIL import Image

from tests.conftest import ApiUser

pytestmark = pytest.mark.live


def first_image(user: ApiUser, **fields: Any) -> dict[str, Any]:
    body = {"prompt": "a red fox in snow", "width": 128, "height": 128, "steps": 6, "seed": 7, **fields}
    response = user.post("/api/v1/generations", json=body)
    assert response.status_code == 202, response.text
    done = user.wait_until_done(response.json()["id"])
    assert done["status"] == "succeeded", done
    return dict(done["images"][0])


def finished(user: ApiUser, response: Any) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    done = user.wait_until_done(response.json()["id"])
    assert done["status"] == "succeeded", done
    return done


def picture(user: ApiUser, url: str) -> Image.Image:
    response = user.get(url)
    assert response.status_code == 200
    return Image.open(io.BytesIO(response.content))


def test_upscale_renders_twice_the_size_from_the_parent(alice: ApiUser) -> None:
    parent = first_image(alice)
    done = finished(alice, alice.post(f"/api/v1/images/{parent['id']}/upscale"))
    assert (done["width"], done["height"], done["seed"]) == (256, 256, parent["seed"])
    child = done["images"][0]
    assert picture(alice, child["url"]).size == (256, 256)
    detail = alice.get(f"/api/v1/images/{child['id']}").json()
    assert detail["action"] == "upscale" and detail["parent"] == parent["id"]
    assert detail["lineage"][0] == {"image": parent["id"], "action": "new", "prompt": "a red fox in snow"}
    children = alice.get(f"/api/v1/images/{parent['id']}").json()["children"]
    assert [c["action"] for c in children] == ["upscale"]


def test_vary_subtle_and_strong_keep_the_prompt_with_a_new_seed(alice: ApiUser) -> None:
    parent = first_image(alice)
    for strength, denoised in (("subtle", 2), ("strong", 4)):
        response = alice.post(f"/api/v1/images/{parent['id']}/vary", json={"strength": strength})
        done = finished(alice, response)
        assert done["prompt"] == "a red fox in snow" and done["kind"] == "img2img"
        assert done["total_steps"] == denoised  # 6 steps x 0.35 / 0.75
        assert done["images"][0]["seed"] != parent["seed"]
        assert alice.get(f"/api/v1/images/{done['images'][0]['id']}").json()["action"] == f"vary_{strength}"


def test_inpaint_repaints_the_masked_area_of_the_parent(alice: ApiUser) -> None:
    parent = first_image(alice)
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (32, 32, 96, 96))
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    response = alice.post(
        f"/api/v1/images/{parent['id']}/inpaint",
        data={"prompt": "a blue hat"},
        files={"mask": ("mask.png", buffer.getvalue(), "image/png")},
    )
    done = finished(alice, response)
    assert done["kind"] == "inpaint" and done["mask_image"] is not None
    before, after = picture(alice, parent["url"]).convert("RGB"), picture(alice, done["images"][0]["url"])
    # The masked square changes more than the rest, which keeps the parent's pixels (up to the VAE).
    inside = mean_difference(before, after.convert("RGB"), (40, 40, 88, 88))
    outside = mean_difference(before, after.convert("RGB"), (0, 0, 128, 24))
    assert inside > outside
    assert after.size == (128, 128)


def test_a_published_image_is_liked_by_another_member_and_served_publicly(
    alice: ApiUser, bob: ApiUser
) -> None:
    parent = first_image(alice, private=True)
    assert bob.post(f"/api/v1/images/{parent['id']}/like").status_code == 404
    assert alice.post(f"/api/v1/images/{parent['id']}/publish").json()["is_public"] is True
    explore = bob.get("/api/v1/explore", params={"q": "fox"}).json()["data"]
    assert parent["id"] in [i["id"] for i in explore]
    assert bob.post(f"/api/v1/images/{parent['id']}/like").json()["like_count"] == 1
    anonymous = requests.get(alice.url(parent["thumbnail_url"]), timeout=10)
    assert anonymous.status_code == 200 and "immutable" in anonymous.headers["Cache-Control"]


def mean_difference(a: Image.Image, b: Image.Image, box: tuple[int, int, int, int]) -> float:
    pairs = zip(a.crop(box).getdata(), b.crop(box).getdata(), strict=True)
    diffs = [sum(abs(x - y) for x, y in zip(p, q, strict=True)) for p, q in pairs]
    return float(sum(diffs)) / len(diffs)

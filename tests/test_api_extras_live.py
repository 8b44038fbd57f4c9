"""Idempotent POSTs, `Prefer: wait`, versioning headers, signed URLs and the OpenAI-compatible
endpoints driven by the official `openai` package, against real processes."""

from __future__ import annotations

import base64
import io
import uuid
from typing import Any

import openai
import pytest
import requests
from django.test import Client
from PIL import Image

from tests.conftest import ApiUser

pytestmark = pytest.mark.live

# The client's types list OpenAI's own sizes; Atelier takes any size the model allows.
TINY: Any = "64x64"
ODD: Any = "100x100"
SMALL = {"prompt": "an idempotent lantern", "width": 64, "height": 64, "steps": 3}


def test_a_repeated_idempotency_key_returns_the_first_response(alice: ApiUser) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = alice.post("/api/v1/generations", json=SMALL, headers=key)
    again = alice.post("/api/v1/generations", json=SMALL, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    listed = alice.get("/api/v1/generations").json()["data"]
    assert [g["id"] for g in listed] == [first.json()["id"]]
    other = alice.post("/api/v1/generations", json={**SMALL, "prompt": "else"}, headers=key)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"


def test_the_same_key_from_another_user_is_independent(alice: ApiUser, bob: ApiUser) -> None:
    key = {"Idempotency-Key": "shared-key"}
    mine = alice.post("/api/v1/generations", json=SMALL, headers=key).json()
    theirs = bob.post("/api/v1/generations", json=SMALL, headers=key).json()
    assert mine["id"] != theirs["id"]


def test_prefer_wait_returns_the_finished_generation(alice: ApiUser) -> None:
    response = alice.post("/api/v1/generations", json=SMALL, headers={"Prefer": "wait=30"})
    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "wait=30"
    assert response.json()["status"] == "succeeded" and len(response.json()["images"]) == 1


def test_prefer_wait_falls_back_to_202_when_it_takes_longer(alice: ApiUser) -> None:
    slow = {**SMALL, "width": 512, "height": 512, "steps": 150}
    response = alice.post("/api/v1/generations", json=slow, headers={"Prefer": "wait=1"})
    assert response.status_code == 202 and response.json()["status"] in ("queued", "running")
    alice.post(f"/api/v1/generations/{response.json()['id']}/cancel")
    # Let the worker finish the cancel before the test's tables are emptied under it.
    assert alice.wait_until_done(response.json()["id"], timeout=60)["status"] == "canceled"


def test_api_responses_carry_the_version_and_deprecations_are_announced(
    alice: ApiUser, settings: Any
) -> None:
    assert alice.get("/api/v1/models").headers["API-Version"] == "1.0"
    settings.ATELIER_DEPRECATED_ROUTES = {
        "api_models": {"sunset": "Sat, 01 May 2027 00:00:00 GMT", "link": "https://example.com/deprecations"}
    }
    client = Client(HTTP_AUTHORIZATION=f"Bearer {alice.key}")
    response = client.get("/api/v1/models")
    assert response["Deprecation"] == "true"
    assert response["Sunset"] == "Sat, 01 May 2027 00:00:00 GMT"
    assert 'rel="deprecation"' in response["Link"]
    assert "Deprecation" not in client.get("/api/v1/generations")


def test_the_official_openai_client_generates_images(alice: ApiUser) -> None:
    client = openai.OpenAI(api_key=alice.key, base_url=alice.base_url + "/v1", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["atelier-demo"]

    encoded = client.images.generate(
        model="atelier-demo", prompt="a paper boat", n=2, size=TINY, response_format="b64_json"
    )
    assert encoded.data is not None and len(encoded.data) == 2
    picture = Image.open(io.BytesIO(base64.b64decode(encoded.data[0].b64_json or "")))
    assert picture.size == (64, 64)

    linked = client.images.generate(prompt="a paper boat", size=TINY, response_format="url")
    assert linked.data is not None
    url = linked.data[0].url or ""
    fetched = requests.get(url, timeout=10)  # a signed URL: no credentials needed
    assert fetched.status_code == 200 and fetched.headers["Content-Type"] == "image/png"
    tampered = requests.get(url[:-3] + "abc", timeout=10)
    assert tampered.status_code in (401, 404)


def test_openai_errors_come_in_openais_shape(alice: ApiUser) -> None:
    client = openai.OpenAI(api_key=alice.key, base_url=alice.base_url + "/v1", max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(prompt="x", size=ODD)
    assert bad.value.body["param"] == "size"  # type: ignore[index]
    anonymous = openai.OpenAI(api_key="atl_nope.nope", base_url=alice.base_url + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.images.generate(prompt="x")


def png(size: tuple[int, int], mode: str = "RGB", color: Any = (30, 90, 200)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, format="PNG")
    return out.getvalue()


def test_the_official_openai_client_edits_an_image_with_a_mask(alice: ApiUser) -> None:
    client = openai.OpenAI(api_key=alice.key, base_url=alice.base_url + "/v1", max_retries=0)
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (16, 16, 48, 48))  # transparent: repaint this square
    mask_file = io.BytesIO()
    mask.save(mask_file, format="PNG")
    edited = client.images.edit(
        image=("photo.png", png((64, 64)), "image/png"),
        mask=("mask.png", mask_file.getvalue(), "image/png"),
        prompt="a red door",
        response_format="b64_json",
    )
    assert edited.data is not None
    result = Image.open(io.BytesIO(base64.b64decode(edited.data[0].b64_json or "")))
    assert result.size == (64, 64)
    generation = alice.get("/api/v1/generations").json()["data"][0]
    assert generation["kind"] == "inpaint" and generation["mask_image"]
    linked = client.images.edit(
        image=("photo.png", png((64, 64)), "image/png"),
        mask=("mask.png", mask_file.getvalue(), "image/png"),
        prompt="a blue door",
        response_format="url",
    )
    assert linked.data is not None
    fetched = requests.get(linked.data[0].url or "", timeout=10)
    assert fetched.status_code == 200 and Image.open(io.BytesIO(fetched.content)).size == (64, 64)


def test_inpainting_through_the_api_checks_the_masks_size(alice: ApiUser) -> None:
    def upload(data: bytes) -> str:
        response = alice.post("/api/v1/uploads", files={"file": ("f.png", data, "image/png")})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    source = upload(png((64, 64)))
    wrong = upload(png((32, 32), "L", 255))
    refused = alice.post("/api/v1/generations", json={**SMALL, "input_image": source, "mask_image": wrong})
    assert refused.status_code == 400 and "mask_image" in refused.json()["error"]["details"]
    right = upload(png((64, 64), "L", 255))
    accepted = alice.post(
        "/api/v1/generations",
        json={**SMALL, "input_image": source, "mask_image": right},
        headers={"Prefer": "wait=30"},
    )
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["kind"] == "inpaint" and accepted.json()["status"] == "succeeded"

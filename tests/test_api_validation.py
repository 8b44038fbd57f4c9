"""Bad input gets a 400 naming the field, and nothing is stored or enqueued."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from PIL import Image

from accounts.models import User
from accounts.services import api_key_create
from billing.models import CreditEntry, EntryKind
from generations.models import Generation, Upload
from generations.queues import redis_client
from generations.samplers import SAMPLERS
from generations.storage import open_content
from tests.factories import private_pool_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client: Client) -> Client:
    user = User.objects.create_user("val", password="x")
    _, key = api_key_create(user=user)
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def queued_jobs() -> int:
    r = redis_client()
    return sum(int(r.llen(f"rq:queue:{name}")) for name in settings.RQ_QUEUES)


def post_generation(api: Client, **fields: Any) -> Any:
    body = {"prompt": "a cat", "width": 512, "height": 512, "steps": 20, **fields}
    return api.post("/api/v1/generations", body, content_type="application/json")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"width": 500}, "width"),
        ({"height": 100000}, "height"),
        ({"width": 8}, "width"),
        ({"steps": 0}, "steps"),
        ({"steps": 151}, "steps"),
        ({"model": "no-such-model"}, "model"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"n": 0}, "n"),
        ({"n": 5}, "n"),
        ({"guidance": -1}, "guidance"),
        ({"seed": -5}, "seed"),
        ({"input_image": "00000000-0000-0000-0000-000000000000"}, "input_image"),
        ({"input_image": "not-a-uuid"}, "input_image"),
        ({"strength": 0.5}, "strength"),
    ],
)
def test_it_rejects_bad_fields_with_a_400_naming_the_field(api: Client, fields: dict, field: str) -> None:
    before = queued_jobs()
    response = post_generation(api, **fields)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]
    assert field in error["message"]
    assert Generation.objects.count() == 0
    assert queued_jobs() == before


def test_it_rejects_a_body_that_is_not_json(api: Client) -> None:
    response = api.post("/api/v1/generations", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_anonymous_requests_get_401_everywhere(client: Client) -> None:
    for path in (
        "/api/v1/generations",
        "/api/v1/models",
        "/api/v1/generations/00000000-0000-0000-0000-000000000000",
    ):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "not_authenticated"
    bad_key = client.get("/api/v1/generations", HTTP_AUTHORIZATION="Bearer atl_x.y")
    assert bad_key.status_code == 401
    assert bad_key.json()["error"]["code"] == "authentication_failed"


def test_unknown_api_paths_answer_in_the_error_shape(api: Client) -> None:
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def image_bytes(fmt: str, size: tuple[int, int] = (64, 64), **save: Any) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(out, format=fmt, **save)
    return out.getvalue()


def upload(api: Client, data: bytes, name: str = "f.png") -> Any:
    return api.post("/api/v1/uploads", {"file": named(data, name)})


def named(data: bytes, name: str) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


@pytest.mark.parametrize(
    "data",
    [
        b"this is not an image at all",
        b"",
        image_bytes("GIF"),
        image_bytes("BMP"),
    ],
)
def test_it_rejects_uploads_that_are_not_accepted_images(api: Client, data: bytes) -> None:
    response = upload(api, data)
    assert response.status_code == 400
    assert "file" in response.json()["error"]["details"]
    assert Upload.objects.count() == 0


def test_it_rejects_uploads_over_the_byte_and_pixel_limits(api: Client, settings: Any) -> None:
    settings.ATELIER_UPLOAD_MAX_BYTES = 1000
    big = upload(api, image_bytes("PNG", (256, 256)) + b"\0" * 2000)
    assert big.status_code == 400 and "file" in big.json()["error"]["details"]
    settings.ATELIER_UPLOAD_MAX_BYTES = 10_000_000
    settings.ATELIER_UPLOAD_MAX_PIXELS = 100 * 100
    wide = upload(api, image_bytes("PNG", (200, 200)))
    assert wide.status_code == 400 and "pixels" in wide.json()["error"]["message"]
    assert Upload.objects.count() == 0


def test_it_reencodes_uploads_and_drops_exif(api: Client) -> None:
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    response = upload(api, image_bytes("JPEG", (64, 48), exif=exif.tobytes()), "photo.jpg")
    assert response.status_code == 201, response.content
    stored = Upload.objects.get()
    picture = Image.open(io.BytesIO(open_content(stored.file)))
    assert picture.format == "PNG"
    assert picture.size == (64, 48)
    assert not picture.getexif()
    assert b"SpyCam" not in open_content(stored.file)


# Samplers: an allowlist, and per model family only the ones that fit it


def hold_entries() -> int:
    return CreditEntry.objects.filter(kind=EntryKind.HOLD).count()


def test_an_unknown_sampler_is_a_400_naming_the_field_and_nothing_is_charged(api: Client) -> None:
    before = queued_jobs()
    response = post_generation(api, sampler="k_lms_turbo")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error" and "sampler" in error["details"]
    assert Generation.objects.count() == 0 and hold_entries() == 0 and queued_jobs() == before


def test_a_sampler_the_models_family_cannot_run_is_refused_with_its_own_code(
    api: Client, settings: Any
) -> None:
    flow = private_pool_model(settings, name="tiny-flow", family="sd3")
    before = queued_jobs()
    for path in ("/api/v1/generations", "/api/v1/generations/quote"):
        body = {"prompt": "a cat", "width": 512, "height": 512, "model": flow.name, "sampler": "dpmpp_2m"}
        response = api.post(path, body, content_type="application/json")
        assert response.status_code == 400, path
        error = response.json()["error"]
        assert error["code"] == "sampler_not_supported"
        assert "sampler" in error["message"]
        assert "default, euler" in error["details"]["sampler"][0]
    # With another bad field the answer is the usual validation_error naming both.
    mixed = post_generation(api, model=flow.name, sampler="ddim", width=500)
    assert mixed.json()["error"]["code"] == "validation_error"
    assert set(mixed.json()["error"]["details"]) == {"sampler", "width"}
    assert Generation.objects.count() == 0 and hold_entries() == 0 and queued_jobs() == before


def test_a_sampler_is_stored_shown_and_listed_per_model(api: Client, settings: Any) -> None:
    flow = private_pool_model(settings, name="tiny-flow", family="sd3")
    response = post_generation(api, sampler="dpmpp_2m_karras")
    assert response.status_code == 202, response.content
    assert response.json()["sampler"] == "dpmpp_2m_karras"
    assert Generation.objects.get().sampler == "dpmpp_2m_karras"
    assert post_generation(api).json()["sampler"] == "default"
    models = {m["id"]: m for m in api.get("/api/v1/models").json()["data"]}
    assert models[flow.name]["samplers"] == ["default", "euler"]
    assert models["atelier-demo"]["samplers"] == list(SAMPLERS)


def test_sides_follow_the_models_size_step(api: Client, settings: Any) -> None:
    flow = private_pool_model(settings, name="sd3-like", family="sd3", size_step=16)
    response = post_generation(api, model=flow.name, width=520)
    assert response.status_code == 400
    assert response.json()["error"]["details"]["width"] == ["Width must be a multiple of 16."]
    assert post_generation(api, model=flow.name, width=528).status_code == 202
    assert post_generation(api, width=264, height=256).status_code == 202  # the built-in step is 8
    models = {m["id"]: m for m in api.get("/api/v1/models").json()["data"]}
    assert (models[flow.name]["size_step"], models["atelier-demo"]["size_step"]) == (16, 8)
    assert "a red circle on a blue background" in models["atelier-demo"]["examples"]
    assert models[flow.name]["examples"] == []

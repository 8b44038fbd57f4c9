"""Every image input on every route passes the upload checks (format allow-list, pixel limit,
no decoding before the checks, a clean 400), and oversized bodies are refused before they are
read (issue 17, Medium 4 and 5)."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from PIL import Image

from accounts.models import User
from accounts.services import api_key_create
from api import openai_compat
from generations.models import Generation, Upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.setattr(openai_compat, "WAIT_SECONDS", 0.5)  # no worker here: do not wait for one
    _, key = api_key_create(user=User.objects.create_user("editor"))
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int) -> bytes:
    """A PNG header that declares width x height RGB pixels, in about a hundred bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
    return b"\x89PNG\r\n\x1a\n" + body + png_chunk(b"IEND", b"")


def edit(api: Client, mask: bytes, name: str) -> Any:
    picture = encoded(Image.new("RGB", (64, 64), (20, 120, 40)), "PNG")
    files = {"image": io.BytesIO(picture), "mask": io.BytesIO(mask)}
    files["image"].name, files["mask"].name = "picture.png", name
    return api.post("/v1/images/edits", {"prompt": "a boat", "size": "64x64", **files})


MASKS = {
    "tiff": lambda: encoded(Image.new("L", (64, 64), 255), "TIFF"),
    "bmp": lambda: encoded(Image.new("L", (64, 64), 255), "BMP"),
    # 4200 x 4200: under Pillow's own bomb limit, over Atelier's pixel limit; a few KB on the wire
    "big": lambda: encoded(Image.new("L", (4200, 4200), 255), "PNG"),
    # past Pillow's limit: Pillow raises on decoding, which was a 500
    "bomb": lambda: png_declaring(50_000, 50_000),
    "garbage": lambda: b"not an image at all",
}


@pytest.mark.parametrize("kind", MASKS)
def test_edits_check_the_mask_like_any_upload_and_store_nothing(api: Client, kind: str) -> None:
    mask = MASKS[kind]()
    assert len(mask) < 100_000
    response = edit(api, mask, f"mask.{kind}")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_image" and error["param"] == "mask"
    assert Upload.objects.count() == 0 and Generation.objects.count() == 0


def test_an_upload_under_pillows_limit_but_over_atelier_s_is_refused(api: Client) -> None:
    # What makes this test mean something: Pillow alone would decode it, only our limit refuses it.
    assert settings.ATELIER_UPLOAD_MAX_PIXELS < 4200 * 4200 < (Image.MAX_IMAGE_PIXELS or 0)
    big = io.BytesIO(encoded(Image.new("RGB", (4200, 4200), (1, 2, 3)), "PNG"))
    big.name = "big.png"
    response = api.post("/api/v1/uploads", {"file": big})
    assert response.status_code == 400 and "pixels" in response.json()["error"]["message"]
    assert Upload.objects.count() == 0


class EndlessBody(io.RawIOBase):
    """A request body that never ends, counting what the server reads of it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        chunk = b"x" * (65536 if size is None or size < 0 else min(size, 65536))
        self.read_bytes += len(chunk)
        return chunk

    def readline(self, size: int | None = -1) -> bytes:
        return self.read(size)


@pytest.mark.parametrize(
    "path", ["/api/v1/uploads", "/v1/images/edits", "/upload/image", "/api/v1/images/abc/inpaint"]
)
def test_a_body_declared_larger_than_the_cap_is_refused_before_it_is_read(api: Client, path: str) -> None:
    body = EndlessBody()
    declared = 10**9  # a gigabyte: past the cap (ATELIER_REQUEST_MAX_BYTES), never read
    environ: dict[str, Any] = {"CONTENT_LENGTH": str(declared), "wsgi.input": body}
    response = api.post(path, content_type="multipart/form-data; boundary=xyz", **environ)
    assert response.status_code == 413, response.content
    assert response.json()["error"]["code"] == "request_too_large"
    assert body.read_bytes == 0
    assert Upload.objects.count() == 0


def test_someone_elses_upload_cannot_be_used_as_an_input(api: Client) -> None:
    stranger_key = api_key_create(user=User.objects.create_user("uploader_x"))[1]
    stranger = Client(HTTP_AUTHORIZATION=f"Bearer {stranger_key}")
    picture = io.BytesIO(encoded(Image.new("RGB", (64, 64), (9, 9, 9)), "PNG"))
    picture.name = "theirs.png"
    upload_id = stranger.post("/api/v1/uploads", {"file": picture}).json()["id"]
    body = {"prompt": "a copy", "width": 64, "height": 64, "steps": 2, "input_image": upload_id}
    response = api.post("/api/v1/generations", body, content_type="application/json")
    assert response.status_code == 400 and "input_image" in response.json()["error"]["details"]
    assert Generation.objects.count() == 0

"""Hardening: deploy checks, the Content-Security-Policy, sign-in throttling, hostile uploads."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from typing import Any

import pytest
from django.test import Client
from PIL import Image

from accounts.models import User
from accounts.services import api_key_create
from billing.credits import account_for
from generations.models import Upload
from generations.storage import open_content
from tests.conftest import ROOT, child_env

pytestmark = pytest.mark.django_db


def production_env() -> dict[str, str]:
    env = {**child_env(), "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "k" * 20 + "Zq9!pL2#xV7@mN4$" * 3}
    env["DJANGO_ALLOWED_HOSTS"] = "atelier.example.com"
    return env


def test_production_settings_pass_the_deploy_checks_without_a_warning() -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_pages_carry_a_strict_content_security_policy(client: Client) -> None:
    policy = client.get("/accounts/login/")["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy
    assert "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
    api_docs = client.get("/api/v1/docs/")
    assert "'unsafe-inline'" in api_docs["Content-Security-Policy"]  # Swagger UI boots inline


def test_sign_in_is_throttled_after_repeated_failures(client: Client, settings: Any) -> None:
    settings.ATELIER_LOGIN_MAX_FAILURES = 3
    User.objects.create_user("victim", password="correct horse battery staple")
    for _ in range(3):
        response = client.post("/accounts/login/", {"login": "victim", "password": "guess"})
        assert response.status_code == 200  # the form again, with its error
    locked = client.post("/accounts/login/", {"login": "victim", "password": "correct horse battery staple"})
    assert locked.status_code == 429 and int(locked["Retry-After"]) > 0
    assert "Too many failed sign-ins" in locked.content.decode()
    # Another address, another account: unaffected.
    other = Client(REMOTE_ADDR="198.51.100.7")
    User.objects.create_user("bystander", password="another long password")
    ok = other.post("/accounts/login/", {"login": "bystander", "password": "another long password"})
    assert ok.status_code == 302


@pytest.fixture
def api() -> Client:
    user = User.objects.create_user("uploader")
    account_for(user)
    _, key = api_key_create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def upload(api: Client, data: bytes, name: str) -> Any:
    handle = io.BytesIO(data)
    handle.name = name
    return api.post("/api/v1/uploads", {"file": handle})


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_a_decompression_bomb_is_refused_before_it_is_decoded(api: Client) -> None:
    # 50,000 x 50,000 pixels declared in 100 bytes: decoding it would need 7.5 GB.
    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
    bomb += png_chunk(b"IEND", b"")
    response = upload(api, bomb, "bomb.png")
    assert response.status_code == 400 and "file" in response.json()["error"]["details"]
    assert Upload.objects.count() == 0


def test_a_polyglot_keeps_nothing_but_pixels(api: Client) -> None:
    picture = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(picture, "PNG")
    payload = b"<script>alert(document.cookie)</script>PK\x03\x04zip-in-disguise"
    response = upload(api, picture.getvalue() + payload, "innocent.png")
    assert response.status_code == 201, response.content
    stored = open_content(Upload.objects.get().file)
    assert b"<script>" not in stored and b"zip-in-disguise" not in stored
    assert Image.open(io.BytesIO(stored)).getpixel((5, 5)) == (200, 30, 30)


def test_a_gps_tagged_photo_loses_its_location(api: Client) -> None:
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    exif[0x8825] = gps
    photo = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(photo, "JPEG", exif=exif.tobytes())
    assert Image.open(io.BytesIO(photo.getvalue())).getexif().get_ifd(0x8825)  # it really has GPS
    response = upload(api, photo.getvalue(), "holiday.jpg")
    assert response.status_code == 201, response.content
    stored = Image.open(io.BytesIO(open_content(Upload.objects.get().file)))
    assert stored.format == "PNG" and not stored.getexif() and not stored.info.get("exif")

"""Media on an S3-compatible store: moto's S3 server, started here, stands in for AWS or MinIO."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
import requests
from django.core.files.storage import default_storage
from django.test import Client, override_settings
from PIL import Image as PILImage

from accounts.models import User
from accounts.services import api_key_create
from billing.credits import account_for
from config.settings import s3_storage
from gallery.services import set_published
from generations.models import Image
from generations.storage import open_content, public_url, save_content
from gpu_worker.runner import GenerationRunner
from tests.factories import queued_generation
from tests.s3_support import BUCKET, CREDENTIALS, lowercase

pytestmark = pytest.mark.django_db


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {**CREDENTIALS, "AWS_S3_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(name, value)
    storage = s3_storage(BUCKET)
    with override_settings(
        STORAGES={
            "default": storage,
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
    ):
        yield boto3.client("s3", endpoint_url=s3_server, **lowercase(CREDENTIALS))


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (16, 16), color).save(buffer, "PNG")
    return buffer.getvalue()


def test_content_is_stored_in_the_bucket_and_read_back(s3: Any) -> None:
    data = png((1, 2, 3))
    path, digest = save_content("images", data, "png")
    assert s3.head_object(Bucket=BUCKET, Key=path)["ContentLength"] == len(data)
    assert open_content(path) == data
    assert save_content("images", data, "png") == (path, digest)  # twice is harmless


def owner_and_image(s3: Any) -> tuple[Client, Image]:
    user = User.objects.create_user("bucketeer")
    account_for(user)
    _, key = api_key_create(user=user)
    generation = queued_generation(user, prompt="a bucket of paint")
    runner = GenerationRunner(name="s3-runner")
    try:
        assert runner.run_one(str(generation.id)) == "succeeded"
    finally:
        runner.publisher.close()
    image = Image.objects.get(generation=generation)
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}"), image


def test_the_worker_writes_to_the_bucket_and_private_images_get_presigned_urls(s3: Any) -> None:
    owner, image = owner_and_image(s3)
    assert s3.head_object(Bucket=BUCKET, Key=image.original)["ContentType"] == "image/png"
    assert s3.head_object(Bucket=BUCKET, Key=image.thumbnail)
    assert not image.is_public

    response = owner.get(f"/api/v1/images/{image.id}/content")

    assert response.status_code == 302 and response["Cache-Control"] == "private, no-store"
    signed = response["Location"]
    assert ("Signature" in signed and "Expires=" in signed) or "X-Amz-Signature" in signed
    fetched = requests.get(signed, timeout=10)
    assert fetched.status_code == 200 and PILImage.open(io.BytesIO(fetched.content)).size == (64, 64)
    # The object itself is not readable without a signature.
    assert requests.get(public_url(image.original), timeout=10).status_code == 403
    # Nor through the API for someone else.
    assert Client().get(f"/api/v1/images/{image.id}/content").status_code == 401


def test_a_published_image_is_served_by_its_plain_cacheable_url_until_unpublished(s3: Any) -> None:
    _, image = owner_and_image(s3)
    set_published(image=image, public=True)

    response = Client().get(f"/api/v1/images/{image.id}/content")

    assert response.status_code == 302 and response["Location"] == public_url(image.original)
    fetched = requests.get(response["Location"], timeout=10)
    assert fetched.status_code == 200
    assert fetched.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    set_published(image=image, public=False)
    assert requests.get(public_url(image.original), timeout=10).status_code == 403


def test_presigned_urls_are_short_lived(s3: Any, settings: Any) -> None:
    """The URL expires ATELIER_SIGNED_URL_SECONDS from now. (moto serves expired URLs too, so the
    store's refusal after that moment is AWS's and MinIO's to enforce, not something we can watch.)"""
    path, _ = save_content("images", png((9, 9, 9)), "png")
    signed = default_storage.url(path)
    expires = int(parse_qs(urlparse(signed).query)["Expires"][0])
    assert abs(expires - (time.time() + settings.ATELIER_SIGNED_URL_SECONDS)) < 5
    assert requests.get(signed, timeout=10).status_code == 200

"""Storage tiers and lazy deletion on S3 (moto's server), with the dispatcher as a real process:
an original nobody viewed moves to the cold storage class in place (keeping its visibility) and
comes back when viewed; a deleted image's objects turn private at once and are purged after
retention; orphaned objects are collected."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from django.test import Client, override_settings

from config.settings import s3_storage
from gallery.services import set_published
from generations.models import Image
from generations.storage import public_url, save_content, variant_path
from tests.conftest import child_env
from tests.s3_support import BUCKET, CREDENTIALS, lowercase, s3_env
from tests.storage_support import copy_of, days_ago, member, render, run_dispatcher_once

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {**CREDENTIALS, "AWS_S3_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(name, value)
    storages = {
        "default": s3_storage(BUCKET),
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=storages):
        yield boto3.client("s3", endpoint_url=s3_server, **lowercase(CREDENTIALS))


def storage_class(s3: Any, key: str) -> str | None:
    try:
        return str(s3.head_object(Bucket=BUCKET, Key=key).get("StorageClass", "STANDARD"))
    except ClientError:
        return None  # no such object


def sweep(s3_server: str, **extra: str) -> None:
    run_dispatcher_once({**child_env(), **s3_env(s3_server), **extra})


def test_an_idle_original_moves_to_the_cold_class_in_place_and_back_when_viewed(
    s3: Any, s3_server: str
) -> None:
    ivy = member("ivy")
    published, private = render(ivy.user, prompt="a lamp"), render(ivy.user, prompt="a kettle")
    set_published(image=published, public=True)
    Image.objects.filter(pk__in=[published.pk, private.pk]).update(created_at=days_ago(40))

    sweep(s3_server)

    assert storage_class(s3, published.original) == storage_class(s3, private.original) == "STANDARD_IA"
    assert storage_class(s3, published.thumbnail) == "STANDARD"
    # Moving it kept who may read it: the published one by its plain URL, the other not.
    assert requests.get(public_url(published.original), timeout=10).status_code == 200
    assert requests.get(public_url(private.original), timeout=10).status_code == 403

    response = ivy.client.get(f"/api/v1/images/{private.id}/content")
    assert response.status_code == 302
    assert requests.get(response["Location"], timeout=10).status_code == 200
    assert storage_class(s3, private.original) == "STANDARD"
    assert requests.get(public_url(private.original), timeout=10).status_code == 403
    anonymous = Client().get(f"/api/v1/images/{published.id}/content")
    assert anonymous.status_code == 302 and anonymous["Location"] == public_url(published.original)
    assert storage_class(s3, published.original) == "STANDARD"
    assert requests.get(public_url(published.original), timeout=10).status_code == 200
    assert not Image.objects.filter(pk__in=[published.pk, private.pk], cold=True).exists()

    sweep(s3_server)  # the views, written in one batch, keep them in the standard class
    assert storage_class(s3, published.original) == storage_class(s3, private.original) == "STANDARD"
    viewed = Image.objects.filter(last_viewed_at__gt=days_ago(1))
    assert set(viewed.values_list("pk", flat=True)) == {published.pk, private.pk}


def test_deleted_images_and_orphans_leave_the_bucket_and_shared_objects_stay(s3: Any, s3_server: str) -> None:
    uma, vic = member("uma"), member("vic")
    gone = render(uma.user, prompt="a sail", width=512, height=512, steps=1)
    set_published(image=gone, public=True)
    shared_source = render(uma.user, prompt="a pier")
    shared = copy_of(shared_source, vic.user)
    orphan, _ = save_content("images", b"a finish that failed before its commit", "png")
    gone_files = [gone.original, gone.thumbnail, variant_path(gone.thumbnail, 512)]
    assert all(storage_class(s3, key) for key in gone_files)

    assert uma.client.delete(f"/api/v1/images/{gone.id}").status_code == 204
    assert uma.client.delete(f"/api/v1/images/{shared_source.id}").status_code == 204
    # Gone at once: from the API, and its once-public objects are private again.
    assert Client().get(f"/api/v1/images/{gone.id}/content").status_code == 401
    assert uma.client.get(f"/api/v1/images/{gone.id}/content").status_code == 404
    assert requests.get(public_url(gone.original), timeout=10).status_code == 403
    assert vic.client.get(f"/api/v1/images/{shared.id}/content").status_code == 302

    sweep(s3_server)  # within retention, and the orphan is younger than a day: all stay
    assert all(storage_class(s3, key) for key in [*gone_files, orphan])

    Image.all_objects.filter(deleted_at__isnull=False).update(deleted_at=days_ago(8))
    sweep(s3_server, ATELIER_ORPHAN_AGE_HOURS="0")

    assert [storage_class(s3, key) for key in [*gone_files, orphan]] == [None] * 4
    assert not Image.all_objects.filter(pk__in=[gone.pk, shared_source.pk]).exists()
    # vic's image names the deleted one's files: they stay, and it is served.
    assert storage_class(s3, shared.original) and storage_class(s3, shared.thumbnail)
    served = vic.client.get(f"/api/v1/images/{shared.id}/content")
    assert requests.get(served["Location"], timeout=10).status_code == 200

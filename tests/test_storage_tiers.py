"""Storage tiers and lazy deletion on the filesystem, with the dispatcher as a real process: an
original nobody viewed moves to the cold folder and comes back when viewed; a deleted image is gone
at once and purged after retention (a shared file only when no image names it any more); orphaned
files are collected once old; thumbnails come in several sizes."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.test import override_settings
from PIL import Image as PILImage

from core.redis import redis_client
from generations import thumbnails
from generations.models import Image
from generations.storage import save_content, variant_path
from generations.tiers import VIEWS_KEY
from tests.conftest import child_env
from tests.storage_support import copy_of, days_ago, member, render, run_dispatcher_once, run_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_session_workers")]


@dataclass
class Tiers:
    hot: Path
    cold: Path
    env: dict[str, str]

    def where(self, path: str) -> set[str]:
        return {name for name, root in (("hot", self.hot), ("cold", self.cold)) if (root / path).exists()}

    def sweep(self) -> None:
        run_dispatcher_once(self.env)


@pytest.fixture
def tiers(tmp_path: Path) -> Iterator[Tiers]:
    hot, cold = tmp_path / "media", tmp_path / "media-cold"
    with override_settings(MEDIA_ROOT=hot, ATELIER_COLD_MEDIA_ROOT=str(cold)):
        redis_client().delete(VIEWS_KEY)
        yield Tiers(hot, cold, {**child_env(), "ATELIER_COLD_MEDIA_ROOT": str(cold)})


def test_an_original_nobody_viewed_goes_cold_and_comes_back_when_viewed(tiers: Tiers) -> None:
    tess = member("tess")
    image = render(tess.user)
    shared = copy_of(image, tess.user)  # the same files, as a cached answer has them
    original = (tiers.hot / image.original).read_bytes()
    Image.objects.filter(pk__in=[image.pk, shared.pk]).update(created_at=days_ago(40))
    Image.objects.filter(pk=shared.pk).update(last_viewed_at=days_ago(2))

    tiers.sweep()  # one of the two images was viewed lately: the shared file stays hot
    assert tiers.where(image.original) == {"hot"}

    Image.objects.filter(pk=shared.pk).update(last_viewed_at=days_ago(31))
    tiers.sweep()
    assert tiers.where(image.original) == {"cold"}
    assert tiers.where(image.thumbnail) == {"hot"}  # lists show thumbnails: they stay
    assert list(Image.objects.filter(pk__in=[image.pk, shared.pk]).values_list("cold", flat=True)) == [
        True,
        True,
    ]

    response = tess.client.get(f"/api/v1/images/{image.id}/content")
    assert response.status_code == 200 and response.content == original
    assert tiers.where(image.original) == {"hot"}
    assert not Image.objects.filter(original=image.original, cold=True).exists()
    # The view is noted in Redis, not written to the database one by one ...
    image.refresh_from_db()
    assert image.last_viewed_at is None
    tess.client.get(f"/api/v1/images/{shared.id}/content")

    tiers.sweep()  # ... the dispatcher writes the views in one batch, and they keep it hot
    image.refresh_from_db()
    shared.refresh_from_db()
    assert image.last_viewed_at is not None and image.last_viewed_at > days_ago(1)
    assert shared.last_viewed_at is not None and shared.last_viewed_at > days_ago(1)
    assert tiers.where(image.original) == {"hot"}


def test_a_cold_original_is_still_read_by_everything_that_reads_files(tiers: Tiers) -> None:
    tess = member("tessa")
    image = render(tess.user)
    Image.objects.filter(pk=image.pk).update(created_at=days_ago(40))
    tiers.sweep()
    assert tiers.where(image.original) == {"cold"}
    # An upscale reads the original as its input: the worker finds it in the cold folder.
    upscale = tess.client.post(f"/api/v1/images/{image.id}/upscale")
    assert upscale.status_code == 202, upscale.content
    assert run_job(upscale.json()["id"]) == "succeeded"


def test_a_deleted_image_vanishes_at_once_and_is_purged_after_retention(tiers: Tiers) -> None:
    dora, other = member("dora"), member("otto")
    image = render(dora.user, width=512, height=512, steps=1)
    shared = copy_of(image, other.user)
    files = [image.original, image.thumbnail, variant_path(image.thumbnail, 512)]
    assert all(tiers.where(path) == {"hot"} for path in files)

    assert dora.client.delete(f"/api/v1/images/{image.id}").status_code == 204

    for url in ("", "/content", "/thumbnail", "/thumbnail?size=512"):
        assert dora.client.get(f"/api/v1/images/{image.id}{url}").status_code == 404, url
    listing = dora.client.get("/api/v1/generations").json()["data"]
    assert [g["images"] for g in listing] == [[]]
    assert dora.client.delete(f"/api/v1/images/{image.id}").status_code == 404

    tiers.sweep()  # within the retention period: the row and files wait
    assert Image.all_objects.filter(pk=image.pk).exists()
    assert all(tiers.where(path) == {"hot"} for path in files)

    Image.all_objects.filter(pk=image.pk).update(deleted_at=days_ago(8))
    tiers.sweep()
    assert not Image.all_objects.filter(pk=image.pk).exists()
    # Another member's image names the same files: they stay, and it is served.
    assert all(tiers.where(path) == {"hot"} for path in files)
    assert other.client.get(f"/api/v1/images/{shared.id}/content").status_code == 200

    assert other.client.delete(f"/api/v1/images/{shared.id}").status_code == 204
    Image.all_objects.filter(pk=shared.pk).update(deleted_at=days_ago(8))
    tiers.sweep()
    assert [tiers.where(path) for path in files] == [set(), set(), set()]


def test_orphaned_files_are_collected_once_old_and_named_ones_are_kept(tiers: Tiers) -> None:
    kept = render(member("kim").user)
    orphan, _ = save_content("images", b"written by a finish that failed", "png")
    orphan_thumbnail, _ = save_content("thumbnails", b"its thumbnail", "webp")
    young, _ = save_content("images", b"a finish still committing", "png")
    cold_orphan = "images/cc/" + "c" * 64 + ".png"
    (tiers.cold / cold_orphan).parent.mkdir(parents=True)
    (tiers.cold / cold_orphan).write_bytes(b"an orphan in the cold tier")
    two_days_ago = time.time() - 2 * 86400
    for path in (orphan, orphan_thumbnail, kept.original, kept.thumbnail):
        os.utime(tiers.hot / path, (two_days_ago, two_days_ago))
    os.utime(tiers.cold / cold_orphan, (two_days_ago, two_days_ago))

    tiers.sweep()

    assert tiers.where(orphan) == tiers.where(orphan_thumbnail) == tiers.where(cold_orphan) == set()
    assert tiers.where(young) == {"hot"}  # younger than ATELIER_ORPHAN_AGE_HOURS
    assert tiers.where(kept.original) == tiers.where(kept.thumbnail) == {"hot"}


def test_thumbnails_come_in_the_sizes_the_image_reaches(tiers: Tiers) -> None:
    wren = member("wren")
    image = render(wren.user, width=512, height=512, steps=1)
    small = render(wren.user)
    assert (image.thumbnail_sizes, small.thumbnail_sizes) == ([512], [])
    body = wren.client.get(f"/api/v1/generations/{image.generation_id}").json()
    thumbnails = body["images"][0]["thumbnails"]
    assert [(t["size"], t["width"], t["height"]) for t in thumbnails] == [(256, 256, 256), (512, 512, 512)]
    for thumbnail in thumbnails:
        response = wren.client.get(thumbnail["url"])
        assert response.status_code == 200 and response["Content-Type"] == "image/webp"
        picture = PILImage.open(io.BytesIO(response.content))
        assert picture.size == (thumbnail["width"], thumbnail["height"])
    refused = wren.client.get(f"/api/v1/images/{image.id}/thumbnail?size=1024")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "validation_error"
    assert "size" in refused.json()["error"]["details"]


def test_a_thumbnail_asked_for_before_its_worker_wrote_it_is_made_from_the_original(tiers: Tiers) -> None:
    # The worker writes thumbnails just after the finish; someone quick may ask before.
    vera = member("vera")
    image = render(vera.user, width=512, height=512, steps=1)
    files = [image.thumbnail, variant_path(image.thumbnail, 512)]
    # Named after the pixels, so known before encoding (and shared by images with the same pixels).
    original = PILImage.open(io.BytesIO((tiers.hot / image.original).read_bytes()))
    assert thumbnails.plan(original).path == image.thumbnail
    written = [(tiers.hot / path).read_bytes() for path in files]
    for path in files:
        (tiers.hot / path).unlink()

    for url, path, before in zip(("/thumbnail", "/thumbnail?size=512"), files, written, strict=True):
        response = vera.client.get(f"/api/v1/images/{image.id}{url}")
        assert response.status_code == 200 and response["Content-Type"] == "image/webp"
        assert response.content == before  # the bytes the worker wrote, made again
        assert (tiers.hot / path).read_bytes() == before  # and stored for the next one
    # Without its original a thumbnail cannot be made: a 404 with a code, as for the original.
    (tiers.hot / image.original).unlink()
    (tiers.hot / image.thumbnail).unlink()
    for url in ("/thumbnail", "/content"):
        missing = vera.client.get(f"/api/v1/images/{image.id}{url}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found", url

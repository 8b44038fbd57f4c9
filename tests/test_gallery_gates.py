"""The gallery's gates hold for every action, not only for submissions (issue 17, Low 10 and 12):
a suspended member cannot publish, like or report; a Free member cannot make an image private."""

from __future__ import annotations

import io

import pytest

from gallery.models import Like, Report
from gallery.moderation import suspend_user
from generations.models import Generation, Upload
from tests.api_support import Api
from tests.gallery_support import make_image, png_bytes
from tests.test_gallery_api import code, on_plan

pytestmark = pytest.mark.django_db


def test_a_suspended_member_cannot_publish_like_or_report(owner: Api, other: Api) -> None:
    assert owner.user is not None and other.user is not None
    mine = make_image(owner.user, public=False)
    theirs = make_image(other.user, public=True)
    suspend_user(user=owner.user, reason="spam")
    published = owner.post(f"/api/v1/images/{mine.id}/publish")
    assert published.status_code == 403 and code(published) == "account_suspended"
    mine.refresh_from_db()
    assert mine.is_public is False
    assert code(owner.post(f"/api/v1/images/{theirs.id}/like")) == "account_suspended"
    report = owner.post(f"/api/v1/images/{theirs.id}/report", {"reason": "spam"})
    assert report.status_code == 403 and code(report) == "account_suspended"
    assert not Like.objects.exists() and not Report.objects.exists()
    # taking one's own image down stays possible
    assert owner.post(f"/api/v1/images/{mine.id}/unpublish").status_code == 200


def test_a_free_member_cannot_make_an_image_private_by_unpublishing(owner: Api) -> None:
    assert owner.user is not None
    on_plan(owner.user, "free")
    image = make_image(owner.user, public=True)
    refused = owner.post(f"/api/v1/images/{image.id}/unpublish")
    assert refused.status_code == 403 and code(refused) == "private_not_allowed"
    image.refresh_from_db()
    assert image.is_public is True
    on_plan(owner.user, "pro")
    assert owner.post(f"/api/v1/images/{image.id}/unpublish").json()["is_public"] is False


def test_a_hidden_image_cannot_be_upscaled_varied_or_inpainted(owner: Api) -> None:
    """Staff hid it: a near-copy of it must not come back published (a Free plan's default)."""
    assert owner.user is not None
    image = make_image(owner.user, hidden=True)
    responses = [
        owner.post(f"/api/v1/images/{image.id}/upscale"),
        owner.post(f"/api/v1/images/{image.id}/vary", {"strength": "subtle"}),
        owner.upload(
            f"/api/v1/images/{image.id}/inpaint", {"prompt": "a hat", "mask": io.BytesIO(png_bytes(64, 64))}
        ),
    ]
    assert [r.status_code for r in responses] == [403, 403, 403]
    assert {code(r) for r in responses} == {"permission_denied"}
    assert Generation.objects.count() == 1 and Upload.objects.count() == 0  # the parent's only


def test_lineage_shows_strangers_only_what_they_may_see(owner: Api, other: Api) -> None:
    assert owner.user is not None
    secret = make_image(owner.user, "a secret plan", public=False)
    shown = make_image(owner.user, "a harmless boat", public=True)
    Generation.objects.filter(pk=shown.generation_id).update(parent=secret)
    draft = make_image(owner.user, "a private draft", public=False)
    Generation.objects.filter(pk=draft.generation_id).update(parent=shown)
    stranger = other.get(f"/api/v1/images/{shown.id}").json()
    assert stranger["parent"] is None
    assert all(step["image"] is None and step["prompt"] is None for step in stranger["lineage"])
    assert "a secret plan" not in str(stranger) and str(secret.id) not in str(stranger)
    assert stranger["children"] == []  # the owner's private draft
    mine = owner.get(f"/api/v1/images/{shown.id}").json()
    assert mine["lineage"][0]["prompt"] == "a secret plan" and mine["parent"] == str(secret.id)
    assert [child["generation"] for child in mine["children"]] == [str(draft.generation_id)]

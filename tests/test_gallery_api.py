"""The gallery API without a worker: who may see, publish, like, report and delete what; Explore's
sorts and search; the blocklist; suspension; plan-based visibility; style presets; remix."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from PIL import Image as PILImage

from accounts.models import User
from billing.credits import account_for, plan_by_slug
from gallery.models import BlockedTerm, Like, Report, StylePreset
from gallery.moderation import suspend_user
from gallery.services import like_image
from generations.models import Generation, Image
from generations.selectors import viewable_image
from tests.api_support import Api
from tests.gallery_support import make_image, png_bytes

pytestmark = pytest.mark.django_db


def code(response: Any) -> str:
    return str(response.json()["error"]["code"])


def on_plan(user: User, slug: str) -> None:
    account = account_for(user)
    account.plan = plan_by_slug(slug)
    account.save()


# --- who may do what -------------------------------------------------------------------------


def test_it_lets_only_the_owner_publish_and_unpublish(owner: Api, other: Api, anonymous: Api) -> None:
    assert owner.user is not None
    image = make_image(owner.user, public=False)
    response = owner.post(f"/api/v1/images/{image.id}/publish")
    assert response.status_code == 200 and response.json()["is_public"] is True
    assert other.post(f"/api/v1/images/{image.id}/unpublish").status_code == 404
    assert code(other.post(f"/api/v1/images/{image.id}/unpublish")) == "not_found"
    assert anonymous.post(f"/api/v1/images/{image.id}/unpublish").status_code == 401
    image.refresh_from_db()
    assert image.is_public is True
    assert owner.post(f"/api/v1/images/{image.id}/unpublish").json()["is_public"] is False


def test_it_likes_and_unlikes_a_published_image_once(owner: Api, other: Api) -> None:
    assert owner.user is not None
    image = make_image(owner.user)
    first = other.post(f"/api/v1/images/{image.id}/like")
    assert first.status_code == 200 and first.json()["like_count"] == 1 and first.json()["liked"]
    assert other.post(f"/api/v1/images/{image.id}/like").json()["like_count"] == 1
    image.refresh_from_db()
    assert image.like_count == 1 and Like.objects.count() == 1
    unliked = other.delete(f"/api/v1/images/{image.id}/like")
    assert unliked.status_code == 200 and unliked.json()["like_count"] == 0
    assert other.delete(f"/api/v1/images/{image.id}/like").json()["like_count"] == 0


@pytest.mark.parametrize("state", [{"public": False}, {"hidden": True}])
def test_it_hides_private_and_hidden_images_from_likes_and_reports(
    owner: Api, other: Api, state: dict[str, bool]
) -> None:
    assert owner.user is not None
    image = make_image(owner.user, public=state.get("public", True), hidden=state.get("hidden", False))
    for api in (owner, other):
        assert code(api.post(f"/api/v1/images/{image.id}/like")) == "not_found"
        assert api.post(f"/api/v1/images/{image.id}/report", {"reason": "spam"}).status_code == 404
    assert Like.objects.count() == 0 and Report.objects.count() == 0


def test_anonymous_callers_cannot_like_report_or_act(owner: Api, anonymous: Api) -> None:
    assert owner.user is not None
    image = make_image(owner.user)
    for action in ("like", "report", "upscale", "vary", "remix", "publish"):
        response = anonymous.post(f"/api/v1/images/{image.id}/{action}")
        assert response.status_code == 401, action
        assert code(response) == "not_authenticated"
    assert anonymous.delete(f"/api/v1/images/{image.id}").status_code == 401


def test_it_files_a_report_with_a_reason(owner: Api, other: Api) -> None:
    assert owner.user is not None
    image = make_image(owner.user)
    bad = other.post(f"/api/v1/images/{image.id}/report", {"reason": "because"})
    assert bad.status_code == 400 and "reason" in bad.json()["error"]["details"]
    response = other.post(f"/api/v1/images/{image.id}/report", {"reason": "violence", "details": "gore"})
    assert response.status_code == 201
    assert response.json()["status"] == "open"
    other.post(f"/api/v1/images/{image.id}/report", {"reason": "spam"})
    report = Report.objects.get()
    assert (report.reason, report.reporter) == ("spam", other.user)


def test_the_image_resource_is_the_owners_or_public(owner: Api, other: Api, anonymous: Api) -> None:
    assert owner.user is not None
    private = make_image(owner.user, public=False)
    public = make_image(owner.user)
    assert owner.get(f"/api/v1/images/{private.id}").json()["mine"] is True
    assert other.get(f"/api/v1/images/{private.id}").status_code == 404
    assert anonymous.get(f"/api/v1/images/{private.id}").status_code == 404
    assert anonymous.get(f"/api/v1/images/{public.id}").json()["owner"] == "owner"
    assert anonymous.get("/api/v1/images/not-a-uuid").status_code == 404


def test_only_the_owner_deletes_an_image(owner: Api, other: Api) -> None:
    assert owner.user is not None
    image = make_image(owner.user)
    assert other.delete(f"/api/v1/images/{image.id}").status_code == 404
    assert owner.delete(f"/api/v1/images/{image.id}").status_code == 204
    assert not Image.objects.filter(pk=image.pk).exists()
    assert owner.get(f"/api/v1/images/{image.id}/content").status_code == 404


def test_image_files_are_public_and_cacheable_only_when_published(
    owner: Api, other: Api, anonymous: Api
) -> None:
    assert owner.user is not None
    public, private = make_image(owner.user), make_image(owner.user, public=False)
    response = anonymous.get(f"/api/v1/images/{public.id}/content")
    assert response.status_code == 200 and "public" in response["Cache-Control"]
    assert "max-age=31536000" in response["Cache-Control"]
    assert anonymous.get(f"/api/v1/images/{private.id}/content").status_code == 401
    assert other.get(f"/api/v1/images/{private.id}/thumbnail").status_code == 404
    mine = owner.get(f"/api/v1/images/{private.id}/content")
    assert mine.status_code == 200 and mine["Cache-Control"].startswith("private")
    Image.objects.filter(pk=public.pk).update(hidden=True)
    assert anonymous.get(f"/api/v1/images/{public.id}/content").status_code == 401


def test_serving_a_file_finds_exactly_the_images_the_gallery_shows(owner: Api, other: Api) -> None:
    """The file path's SQL (``related=False``) against the ORM's condition (EXPLORE_VISIBLE or
    one's own, live only), for every kind of image and every kind of caller."""
    assert owner.user is not None and other.user is not None
    images = [
        make_image(owner.user),
        make_image(owner.user, public=False),
        make_image(owner.user, hidden=True),
        make_image(owner.user, public=False, hidden=True),
        make_image(owner.user, deleted_at=timezone.now()),
        make_image(owner.user, public=False, deleted_at=timezone.now()),
    ]
    expected = {
        owner.user: [True, True, True, True, False, False],
        other.user: [True, False, False, False, False, False],
        None: [True, False, False, False, False, False],
    }
    for user, visible in expected.items():
        for image, shown in zip(images, visible, strict=True):
            by_sql = viewable_image(user, image.id, related=False)
            by_orm = viewable_image(user, image.id)
            assert (by_sql is not None, by_orm is not None) == (shown, shown), (user, image)
            if by_sql is not None and by_orm is not None:
                assert (by_sql.pk, by_sql.original, by_sql.is_public) == (
                    image.pk,
                    image.original,
                    image.is_public,
                )
                assert (
                    by_sql.created_at == by_orm.created_at
                    and by_sql.thumbnail_sizes == by_orm.thumbnail_sizes
                )
    for malformed in ("not-a-uuid", "", None, 12):
        assert viewable_image(owner.user, malformed, related=False) is None


# --- actions that need no worker to be checked ------------------------------------------------


def test_remix_returns_the_create_forms_prefill(owner: Api, other: Api) -> None:
    assert owner.user is not None
    image = make_image(owner.user, "a castle on a hill")
    private = make_image(owner.user, public=False)
    body = other.post(f"/api/v1/images/{image.id}/remix").json()
    assert body["prompt"] == "a castle on a hill" and body["seed"] == 42 and body["remix_of"] == str(image.id)
    assert (body["width"], body["height"], body["model"]) == (64, 64, "atelier-demo")
    assert other.post(f"/api/v1/images/{private.id}/remix").status_code == 404
    submitted = other.post(
        "/api/v1/generations", {"prompt": body["prompt"], "width": 64, "height": 64, "remix_of": image.id}
    )
    assert submitted.status_code == 202, submitted.content
    generation = Generation.objects.get(pk=submitted.json()["id"])
    assert generation.parent == image and generation.action == "remix"


def test_actions_on_someone_elses_image_are_404(owner: Api, other: Api) -> None:
    assert owner.user is not None
    image = make_image(owner.user)
    for action in ("upscale", "vary", "publish", "unpublish"):
        assert other.post(f"/api/v1/images/{image.id}/{action}").status_code == 404, action
    mask = png_bytes(64, 64)
    response = other.upload(f"/api/v1/images/{image.id}/inpaint", {"prompt": "x", "mask": io.BytesIO(mask)})
    assert response.status_code == 404
    assert Generation.objects.count() == 1


def test_upscale_and_vary_submit_img2img_from_the_parent(owner: Api) -> None:
    assert owner.user is not None
    image = make_image(owner.user, size=128)
    upscale = owner.post(f"/api/v1/images/{image.id}/upscale")
    assert upscale.status_code == 202, upscale.content
    assert (upscale.json()["width"], upscale.json()["kind"]) == (256, "img2img")
    vary = owner.post(f"/api/v1/images/{image.id}/vary", {"strength": "strong"})
    assert vary.status_code == 202 and vary.json()["strength"] == 0.75
    made = {g.action: g for g in Generation.objects.filter(parent=image)}
    assert set(made) == {"upscale", "vary_strong"}
    assert made["upscale"].seed == image.seed and made["upscale"].input_upload is not None
    assert made["upscale"].input_upload.file == image.original  # the parent's own file, not a copy
    bad = owner.post(f"/api/v1/images/{image.id}/vary", {"strength": "wild"})
    assert bad.status_code == 400 and "strength" in bad.json()["error"]["details"]


def test_upscale_and_vary_keep_the_parents_sampler(owner: Api) -> None:
    assert owner.user is not None
    image = make_image(owner.user, size=128)
    Generation.objects.filter(pk=image.generation_id).update(sampler="euler_a")
    assert owner.post(f"/api/v1/images/{image.id}/upscale").json()["sampler"] == "euler_a"
    assert owner.post(f"/api/v1/images/{image.id}/vary").json()["sampler"] == "euler_a"


def test_upscale_past_the_models_largest_side_is_refused(owner: Api) -> None:
    assert owner.user is not None
    image = make_image(owner.user, size=512)  # 1024 > atelier-demo's 512
    response = owner.post(f"/api/v1/images/{image.id}/upscale")
    assert response.status_code == 400 and code(response) == "image_too_large"
    assert response.json()["error"]["details"]["max_side"] == 512
    assert Generation.objects.count() == 1


def jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), "white").save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mask", "words"),
    [(png_bytes(32, 32), "64x64"), (jpeg(64, 64), "PNG or WebP"), (b"not an image", "readable")],
)
def test_a_bad_mask_is_a_400_naming_the_mask(owner: Api, mask: bytes, words: str) -> None:
    assert owner.user is not None
    image = make_image(owner.user)
    response = owner.upload(
        f"/api/v1/images/{image.id}/inpaint", {"prompt": "a hat", "mask": io.BytesIO(mask)}
    )
    assert response.status_code == 400
    assert words in response.json()["error"]["details"]["mask"][0]
    missing = owner.upload(f"/api/v1/images/{image.id}/inpaint", {"prompt": "a hat"})
    assert missing.status_code == 400 and "mask" in missing.json()["error"]["details"]
    assert Generation.objects.count() == 1


def test_inpaint_submits_with_the_mask_and_the_parent(owner: Api) -> None:
    assert owner.user is not None
    image = make_image(owner.user)
    response = owner.upload(
        f"/api/v1/images/{image.id}/inpaint", {"prompt": "a hat", "mask": io.BytesIO(png_bytes(64, 64))}
    )
    assert response.status_code == 202, response.content
    assert response.json()["kind"] == "inpaint" and response.json()["prompt"] == "a hat"
    assert Generation.objects.get(pk=response.json()["id"]).parent == image


# --- submission rules -------------------------------------------------------------------------


def test_a_blocked_prompt_is_refused_at_submission(owner: Api) -> None:
    term = BlockedTerm.objects.create(term="forbidden thing")
    response = owner.post("/api/v1/generations", {"prompt": "a FORBIDDEN   thing at dusk"})
    assert response.status_code == 400 and code(response) == "prompt_blocked"
    assert "prompt" in response.json()["error"]["details"]
    assert owner.post("/api/v1/generations", {"prompt": "an unforbidden thingamajig"}).status_code == 202
    term.active = False  # as staff do in the admin (a save, which every process sees within 5 s)
    term.save()
    assert owner.post("/api/v1/generations", {"prompt": "a forbidden thing"}).status_code == 202
    assert Generation.objects.count() == 2


def test_a_blocked_prompt_is_refused_for_image_actions_too(owner: Api) -> None:
    assert owner.user is not None
    image = make_image(owner.user, size=128)
    BlockedTerm.objects.create(term="fox")
    assert code(owner.post(f"/api/v1/images/{image.id}/vary")) == "prompt_blocked"


def test_a_suspended_member_cannot_submit(owner: Api) -> None:
    assert owner.user is not None
    image = make_image(owner.user, size=128)
    suspend_user(user=owner.user, reason="spam")
    response = owner.post("/api/v1/generations", {"prompt": "a cat"})
    assert response.status_code == 403 and code(response) == "account_suspended"
    assert code(owner.post(f"/api/v1/images/{image.id}/upscale")) == "account_suspended"
    assert Generation.objects.count() == 1


def test_visibility_defaults_from_the_plan(owner: Api) -> None:
    assert owner.user is not None
    on_plan(owner.user, "free")
    free = owner.post("/api/v1/generations", {"prompt": "a cat"})
    assert Generation.objects.get(pk=free.json()["id"]).is_public is True
    refused = owner.post("/api/v1/generations", {"prompt": "a cat", "private": True})
    assert refused.status_code == 403 and code(refused) == "private_not_allowed"
    on_plan(owner.user, "pro")
    pro = owner.post("/api/v1/generations", {"prompt": "a cat"})
    assert Generation.objects.get(pk=pro.json()["id"]).is_public is False
    public = owner.post("/api/v1/generations", {"prompt": "a cat", "private": False})
    generation = Generation.objects.get(pk=public.json()["id"])
    assert generation.is_public is True
    image = Image.objects.create(
        generation=generation, index=0, seed=1, width=8, height=8, original="x", thumbnail="x", sha256="x"
    )
    assert image.is_public is True  # images start with their generation's visibility


def test_a_style_preset_wraps_the_prompt(owner: Api) -> None:
    StylePreset.objects.create(
        slug="ink", name="Ink", prompt_template="ink drawing of {prompt}", negative_prompt="colour"
    )
    response = owner.post(
        "/api/v1/generations", {"prompt": "a {cat}", "negative_prompt": "blur", "style_preset": "ink"}
    )
    assert response.json()["prompt"] == "ink drawing of a {cat}"
    assert response.json()["negative_prompt"] == "blur, colour"
    unknown = owner.post("/api/v1/generations", {"prompt": "a cat", "style_preset": "nope"})
    assert unknown.status_code == 400 and "style_preset" in unknown.json()["error"]["details"]
    assert "ink" in [s["id"] for s in owner.get("/api/v1/styles").json()["data"]]


# --- Explore, profiles, My images -------------------------------------------------------------


def ids(response: Any) -> list[str]:
    return [item["id"] for item in response.json()["data"]]


def test_explore_shows_published_unhidden_images_newest_first(owner: Api, anonymous: Api) -> None:
    assert owner.user is not None
    now = timezone.now()
    old = make_image(owner.user, created_at=now - timedelta(hours=2))
    new = make_image(owner.user, created_at=now - timedelta(hours=1))
    make_image(owner.user, public=False)
    hidden = make_image(owner.user)
    assert ids(anonymous.get("/api/v1/explore")) == [str(hidden.id), str(new.id), str(old.id)]
    # Staff hide an image (the admin action sets the same flag).
    Image.objects.filter(pk=hidden.pk).update(hidden=True)
    assert ids(anonymous.get("/api/v1/explore")) == [str(new.id), str(old.id)]
    assert ids(anonymous.get("/api/v1/users/owner/images")) == [str(new.id), str(old.id)]
    assert anonymous.get("/api/v1/users/nobody/images").status_code == 404


def test_explore_sorts_by_top_and_trending(owner: Api, other: Api) -> None:
    assert owner.user is not None
    now = timezone.now()
    loved_old = make_image(owner.user, created_at=now - timedelta(days=3), likes=50)
    liked_new = make_image(owner.user, created_at=now - timedelta(hours=1), likes=5)
    fresh = make_image(owner.user, created_at=now)
    ancient = make_image(owner.user, created_at=now - timedelta(days=60), likes=500)
    top = ids(other.get("/api/v1/explore", sort="top"))
    assert top == [str(loved_old.id), str(liked_new.id), str(fresh.id)]
    assert ids(other.get("/api/v1/explore", sort="top", window="all"))[0] == str(ancient.id)
    trending = ids(other.get("/api/v1/explore", sort="trending"))
    assert trending[0] == str(liked_new.id) and str(ancient.id) not in trending
    # A like moves an image up the trending list.
    for i in range(20):
        like_image(user=User.objects.create_user(f"fan{i}"), image=fresh)
    other.post(f"/api/v1/images/{fresh.id}/like")
    assert ids(other.get("/api/v1/explore", sort="trending"))[0] == str(fresh.id)
    assert other.get("/api/v1/explore", sort="sideways").status_code == 400


def test_explore_pages_with_a_cursor(owner: Api, other: Api) -> None:
    assert owner.user is not None
    now = timezone.now()
    made = [make_image(owner.user, created_at=now - timedelta(minutes=i), likes=i % 3) for i in range(7)]
    for sort in ("new", "top", "trending"):
        seen: list[str] = []
        url: str | None = f"/api/v1/explore?sort={sort}&limit=3"
        while url:
            response = other.client.get(url)
            seen += ids(response)
            url = response.json()["next"]
        assert sorted(seen) == sorted(str(i.id) for i in made), sort


def test_explore_search_finds_prompts_by_words(owner: Api, other: Api) -> None:
    assert owner.user is not None
    fox = make_image(owner.user, "A red fox in the snow")
    make_image(owner.user, "a lighthouse at dusk")
    make_image(owner.user, "a red fox, private", public=False)
    assert ids(other.get("/api/v1/explore", q="fox snow")) == [str(fox.id)]
    assert ids(other.get("/api/v1/explore", q="RED")) == [str(fox.id)]
    assert ids(other.get("/api/v1/explore", q="fox lighthouse")) == []
    # Quotes, percent signs and SQL are words like any other.
    assert ids(other.get("/api/v1/explore", q="'; DROP TABLE generations_image; --")) == []
    assert ids(other.get("/api/v1/explore", q="100%")) == []
    assert Image.objects.count() == 3


@pytest.mark.skipif(connection.vendor != "postgresql", reason="full-text stemming is PostgreSQL's")
def test_explore_search_uses_postgres_full_text(owner: Api, other: Api) -> None:
    assert owner.user is not None
    foxes = make_image(owner.user, "two foxes running through snowy fields")
    assert ids(other.get("/api/v1/explore", q="fox run")) == [str(foxes.id)]
    assert ids(other.get("/api/v1/explore", q='"foxes running" -cat')) == [str(foxes.id)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'generation_prompt_search'")
        assert "gin" in cursor.fetchone()[0].lower()


def test_my_generations_filter_by_status_model_date_and_words(owner: Api, other: Api) -> None:
    assert owner.user is not None
    fox = make_image(owner.user, "a red fox").generation
    make_image(owner.user, "a lighthouse", created_at=timezone.now() - timedelta(days=10))
    make_image(other.user, "a red fox")  # type: ignore[arg-type]

    def listed(**params: str) -> list[str]:
        return [g["id"] for g in owner.get("/api/v1/generations", **params).json()["data"]]

    assert listed(q="fox") == [str(fox.id)]
    assert listed(status="succeeded", model="atelier-demo", q="fox") == [str(fox.id)]
    assert listed(status="failed") == []
    assert listed(created_after=(timezone.now() - timedelta(days=1)).date().isoformat()) == [str(fox.id)]
    assert len(listed()) == 2
    bad = owner.get("/api/v1/generations", created_after="yesterday")
    assert bad.status_code == 400 and "created_after" in bad.json()["error"]["details"]

"""Reads shared by the gallery's API and pages: Explore, profiles, search, image resources."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from core.errors import ApiError
from core.events import iso
from gallery.models import Like, StylePreset
from generations.models import EXPLORE_VISIBLE, Generation, Image
from generations.selectors import _one_or_none

SORTS = ("new", "top", "trending")
TOP_WINDOWS = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30), "all": None}
# Trending looks at recent images only: an old image cannot trend, and the scan stays small.
TRENDING_WINDOW = timedelta(days=7)
# The orderings Explore pages through (each ends in a unique column so pages never overlap).
ORDERINGS: dict[str, tuple[str, ...]] = {
    "new": ("-created_at", "-id"),
    "top": ("-like_count", "-created_at", "-id"),
    "trending": ("-hot_score", "-id"),
}


def active_style(slug: str) -> StylePreset | None:
    return StylePreset.objects.filter(slug=slug, active=True).first()


def active_styles() -> list[StylePreset]:
    return list(StylePreset.objects.filter(active=True))


def visible_images() -> QuerySet[Image]:
    """Images anyone may see: published and not hidden by staff."""
    return Image.objects.filter(EXPLORE_VISIBLE).select_related("generation", "generation__user")


def visible_image(image_id: Any) -> Image | None:
    return _one_or_none(visible_images(), image_id)


def viewable_image(user: User | None, image_id: Any) -> Image | None:
    """The user's own image, or anyone's visible one."""
    condition = EXPLORE_VISIBLE
    if user is not None:
        condition = condition | Q(generation__user=user)
    images = Image.objects.filter(condition).select_related("generation", "generation__user")
    return _one_or_none(images, image_id)


def owned_image(user: User, image_id: Any) -> Image | None:
    images = Image.objects.filter(generation__user=user).select_related("generation", "generation__user")
    return _one_or_none(images, image_id)


def search_prompts(queryset: QuerySet[Any], q: str, *, field: str = "generation__prompt") -> QuerySet[Any]:
    """Full-text search on PostgreSQL (served by a GIN index), every word as a substring elsewhere.
    Either way the words travel as query parameters."""
    q = q.strip()
    if not q:
        return queryset
    if connection.vendor == "postgresql":
        vector = SearchVector(field, config="english")
        query = SearchQuery(q, config="english", search_type="websearch")
        searched: QuerySet[Any] = queryset.annotate(prompt_search=vector).filter(prompt_search=query)
        return searched
    for word in q.split()[:10]:
        queryset = queryset.filter(**{f"{field}__icontains": word})
    return queryset


def explore_images(*, sort: str = "new", q: str = "", window: str = "week") -> QuerySet[Image]:
    images = visible_images()
    if sort == "top" and TOP_WINDOWS.get(window):
        images = images.filter(created_at__gte=timezone.now() - TOP_WINDOWS[window])  # type: ignore[operator]
    elif sort == "trending":
        images = images.filter(created_at__gte=timezone.now() - TRENDING_WINDOW)
    return search_prompts(images, q).order_by(*ORDERINGS.get(sort, ORDERINGS["new"]))


def published_images_of(user: User) -> QuerySet[Image]:
    return visible_images().filter(generation__user=user).order_by(*ORDERINGS["new"])


def filtered_generations(generations: QuerySet[Generation], params: Any) -> QuerySet[Generation]:
    """My images' filters: status, model, created_after/created_before (ISO dates), q."""
    if params.get("status"):
        generations = generations.filter(status=params["status"])
    if params.get("model"):
        generations = generations.filter(model_name=params["model"])
    for name, lookup in (
        ("created_after", "created_at__date__gte"),
        ("created_before", "created_at__date__lte"),
    ):
        if params.get(name):
            generations = generations.filter(**{lookup: parse_date(name, params[name])})
    return search_prompts(generations, params.get("q", "")[:200], field="prompt")


def parse_date(field: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        message = "Use a date as YYYY-MM-DD."
        raise ApiError(
            "validation_error", f"Invalid field(s): {field}. {message}", {field: [message]}
        ) from None


def liked_ids(user: User | None, images: list[Image]) -> set[Any]:
    if user is None or not images:
        return set()
    return set(
        Like.objects.filter(user=user, image__in=[i.pk for i in images]).values_list("image_id", flat=True)
    )


def lineage(image: Image, *, limit: int = 10) -> list[dict[str, Any]]:
    """The chain of parents from this image's generation back to the first prompt."""
    chain: list[dict[str, Any]] = []
    parent = image.generation.parent
    while parent is not None and len(chain) < limit:
        generation = parent.generation
        chain.append(
            {"image": str(parent.id), "action": generation.action or "new", "prompt": generation.prompt}
        )
        parent = generation.parent
    return chain


def gallery_image_resource(
    image: Image, *, viewer: User | None = None, liked: bool = False, with_lineage: bool = False
) -> dict[str, Any]:
    generation = image.generation
    owner = generation.user
    body: dict[str, Any] = {
        "id": str(image.id),
        "object": "image",
        "url": reverse("api_image_content", args=[image.id]),
        "thumbnail_url": reverse("api_image_thumbnail", args=[image.id]),
        "page_url": reverse("image_detail", args=[image.id]),
        "width": image.width,
        "height": image.height,
        "seed": image.seed,
        "generation": str(generation.id),
        "prompt": generation.prompt,
        "negative_prompt": generation.negative_prompt,
        "model": generation.model_name,
        "action": generation.action or "new",
        "parent": str(generation.parent_id) if generation.parent_id else None,
        "owner": owner.username,
        "is_public": image.is_public,
        "hidden": image.hidden,
        "content_rating": image.content_rating,
        "like_count": image.like_count,
        "liked": liked,
        "mine": viewer is not None and owner.pk == viewer.pk,
        "created_at": iso(image.created_at),
    }
    if with_lineage:
        body["lineage"] = lineage(image)
        body["children"] = [
            {"generation": str(g.id), "action": g.action, "status": g.status}
            for g in image.children.order_by("created_at")[:20]
        ]
    return body


def prefill(image: Image) -> dict[str, Any]:
    """What the Create form needs to remix an image."""
    generation = image.generation
    return {
        "object": "prefill",
        "remix_of": str(image.id),
        "prompt": generation.prompt,
        "negative_prompt": generation.negative_prompt,
        "model": generation.model_name,
        "seed": image.seed,
        "width": generation.width,
        "height": generation.height,
        "steps": generation.steps,
        "guidance": generation.guidance,
        "sampler": generation.sampler,
    }

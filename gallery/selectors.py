"""Reads shared by the gallery's API and pages: Explore, profiles, search, image resources."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from core.events import iso
from gallery.models import Like, StylePreset
from generations.filters import search_prompts
from generations.models import EXPLORE_VISIBLE, Generation, Image
from generations.selectors import _one_or_none, thumbnails

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


def active_styles() -> list[StylePreset]:
    return list(StylePreset.objects.filter(active=True))


def visible_images() -> QuerySet[Image]:
    """Images anyone may see: published and not hidden by staff."""
    related = ("generation", "generation__user", "generation__parent")  # the parent: for `sees`
    return Image.objects.filter(EXPLORE_VISIBLE).select_related(*related)


def visible_image(image_id: Any) -> Image | None:
    return _one_or_none(visible_images(), image_id)


def owned_image(user: User, image_id: Any) -> Image | None:
    images = Image.objects.filter(generation__user=user).select_related("generation", "generation__user")
    return _one_or_none(images, image_id)


def explore_images(*, sort: str = "new", q: str = "", window: str = "week") -> QuerySet[Image]:
    images = visible_images()
    if sort == "top" and TOP_WINDOWS.get(window):
        images = images.filter(created_at__gte=timezone.now() - TOP_WINDOWS[window])  # type: ignore[operator]
    elif sort == "trending":
        images = images.filter(created_at__gte=timezone.now() - TRENDING_WINDOW)
    return search_prompts(images, q).order_by(*ORDERINGS.get(sort, ORDERINGS["new"]))


def published_images_of(user: User) -> QuerySet[Image]:
    return visible_images().filter(generation__user=user).order_by(*ORDERINGS["new"])


def liked_ids(user: User | None, images: list[Image]) -> set[Any]:
    if user is None or not images:
        return set()
    return set(
        Like.objects.filter(user=user, image__in=[i.pk for i in images]).values_list("image_id", flat=True)
    )


def sees(viewer: User | None, image: Image) -> bool:
    """Whether ``viewer`` may see ``image``: published and not hidden, or their own."""
    if viewer is not None and image.generation.user_id == viewer.pk:
        return True
    return image.is_public and not image.hidden


def lineage(image: Image, *, viewer: User | None, limit: int = 10) -> list[dict[str, Any]]:
    """The chain of parents from this image's generation back to the first prompt; a parent the
    viewer may not see keeps its place and action, not its id or prompt."""
    chain: list[dict[str, Any]] = []
    parent = image.generation.parent
    while parent is not None and len(chain) < limit:
        generation = parent.generation
        shown = sees(viewer, parent)
        chain.append(
            {
                "image": str(parent.id) if shown else None,
                "action": generation.action or "new",
                "prompt": generation.prompt if shown else None,
            }
        )
        parent = generation.parent
    return chain


def children_seen_by(viewer: User | None, image: Image) -> QuerySet[Generation]:
    """The generations made from ``image``: all of them for its owner, the published ones (with
    an image anyone may see) for everyone else."""
    children = image.children.order_by("created_at")
    if viewer is not None and image.generation.user_id == viewer.pk:
        return children
    return children.filter(is_public=True, images__is_public=True, images__hidden=False).distinct()


def gallery_image_resource(
    image: Image, *, viewer: User | None = None, liked: bool = False, with_lineage: bool = False
) -> dict[str, Any]:
    generation = image.generation
    owner = generation.user
    parent = generation.parent if generation.parent_id else None
    body: dict[str, Any] = {
        "id": str(image.id),
        "object": "image",
        "url": reverse("api_image_content", args=[image.id]),
        "thumbnail_url": reverse("api_image_thumbnail", args=[image.id]),
        "thumbnails": thumbnails(image),
        "page_url": reverse("image_detail", args=[image.id]),
        "width": image.width,
        "height": image.height,
        "seed": image.seed,
        "generation": str(generation.id),
        "prompt": generation.prompt,
        "negative_prompt": generation.negative_prompt,
        "model": generation.model_name,
        "action": generation.action or "new",
        "parent": str(generation.parent_id) if parent is not None and sees(viewer, parent) else None,
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
        body["lineage"] = lineage(image, viewer=viewer)
        body["children"] = [
            {"generation": str(g.id), "action": g.action, "status": g.status}
            for g in children_seen_by(viewer, image)[:20]
        ]
    return body

"""The gallery's pages: My images, Explore, profiles, image detail, gallery settings.

Lists are rendered server-side for their first page; the rest arrives from the API as the member
scrolls (static/gallery.js)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.models import User
from gallery.moderation import profile_for
from gallery.selectors import (
    SORTS,
    gallery_image_resource,
    liked_ids,
)
from generations.models import GenerationStatus
from generations.registry import all_models
from generations.selectors import viewable_image

FILTERS = ("status", "model", "created_after", "created_before", "q")


def signed_in(request: HttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) and request.user.is_authenticated else None


def show_mature(user: User | None) -> bool:
    return user is not None and profile_for(user).show_mature


@login_required
def my_images(request: HttpRequest) -> HttpResponse:
    filters = {k: request.GET.get(k, "") for k in FILTERS}
    context = {
        "feed_url": reverse("api_generations") + "?" + urlencode({k: v for k, v in filters.items() if v}),
        "statuses": GenerationStatus.values,
        "models": list(all_models()),
        "filters": {
            k: request.GET.get(k, "") for k in ("status", "model", "created_after", "created_before", "q")
        },
    }
    return render(request, "gallery/my_images.html", context)


def explore(request: HttpRequest) -> HttpResponse:
    sort = request.GET.get("sort", "new")
    sort = sort if sort in SORTS else "new"
    q = request.GET.get("q", "")[:200]
    context = {
        "sort": sort,
        "sorts": SORTS,
        "q": q,
        "show_mature": show_mature(signed_in(request)),
        "feed_url": reverse("api_explore") + "?" + urlencode({"sort": sort, "q": q}),
    }
    return render(request, "gallery/explore.html", context)


def profile(request: HttpRequest, username: str) -> HttpResponse:
    owner = get_object_or_404(User, username=username, is_active=True)
    context = {
        "owner": owner,
        "show_mature": show_mature(signed_in(request)),
        "feed_url": reverse("api_profile_images", args=[owner.username]),
    }
    return render(request, "gallery/profile.html", context)


def image_detail(request: HttpRequest, image_id: str) -> HttpResponse:
    user = signed_in(request)
    image = viewable_image(user, image_id)
    if image is None:
        raise Http404("No such image.")
    resource = gallery_image_resource(
        image, viewer=user, liked=bool(liked_ids(user, [image])), with_lineage=True
    )
    context = {"image": image, "resource": resource, "generation": image.generation}
    return render(request, "gallery/image_detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def gallery_settings(request: HttpRequest) -> HttpResponse:
    user = signed_in(request)
    assert user is not None
    settings_ = profile_for(user)
    if request.method == "POST":
        settings_.show_mature = request.POST.get("show_mature") == "on"
        settings_.save(update_fields=["show_mature"])
        messages.success(request, "Gallery settings saved.")
        return redirect("gallery_settings")
    return render(request, "gallery/settings.html", {"profile": settings_})

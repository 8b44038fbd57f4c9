"""Every API route the URL resolver knows, against the owner / other user / anonymous trio:
anonymous gets 401 (or the route's documented public status) and another user gets 404 on the
owner's object, exactly as a missing one. A route missing from ROUTES fails the suite, so a new
endpoint cannot ship without its rule."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.models import User
from api.middleware import COMFY_ROOTS
from generations.exports import data_export_request, make_pending_exports
from tests.api_support import Api
from tests.factories import queued_generation
from tests.gallery_support import make_image
from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

API_PREFIXES = ("api/", "v1/", *(root.lstrip("/") for root in COMFY_ROOTS))


@dataclass(frozen=True)
class Rule:
    methods: tuple[str, ...]
    # What anonymous gets, by method; 401 unless the route documents another answer.
    anonymous: dict[str, int] = field(default_factory=dict)
    # Another user on the owner's object: 404 by default where the route names an owner's
    # object; a route without one (a list, a create, a public page) has nothing to hide.
    other: int | None = 404

    def anonymous_status(self, method: str) -> int:
        return self.anonymous.get(method, 401)


ROUTES: dict[str, Rule] = {
    # Public: the schema and its docs.
    "api_schema": Rule(("get",), anonymous={"get": 200}, other=None),
    "api_docs": Rule(("get",), anonymous={"get": 200}, other=None),
    # generations
    "api_generations": Rule(("get", "post"), other=None),
    "api_generation_quote": Rule(("post",), other=None),
    "api_generation_detail": Rule(("get",)),
    "api_generation_cancel": Rule(("post",)),
    "api_uploads": Rule(("post",), other=None),
    "api_image_content": Rule(("get",)),
    "api_image_thumbnail": Rule(("get",)),
    "api_models": Rule(("get",), other=None),
    # webhooks
    "api_webhooks": Rule(("get", "post"), other=None),
    "api_webhook_detail": Rule(("get", "patch", "delete")),
    "api_webhook_test": Rule(("post",)),
    "api_webhook_deliveries": Rule(("get",)),
    # gallery: a private image is missing to anyone but its owner, signed in or not.
    "api_image_detail": Rule(("get", "delete"), anonymous={"get": 404}),
    "api_image_upscale": Rule(("post",)),
    "api_image_vary": Rule(("post",)),
    "api_image_remix": Rule(("post",)),
    "api_image_inpaint": Rule(("post",)),
    "api_image_publish": Rule(("post",)),
    "api_image_unpublish": Rule(("post",)),
    "api_image_like": Rule(("post", "delete")),
    "api_image_report": Rule(("post",)),
    "api_explore": Rule(("get",), anonymous={"get": 200}, other=None),
    "api_profile_images": Rule(("get",), anonymous={"get": 200}, other=None),
    "api_styles": Rule(("get",), other=None),
    # billing
    "api_billing": Rule(("get",), other=None),
    # The OpenAI-compatible surface: an API key or nothing.
    "openai_images_generations": Rule(("post",), other=None),
    "openai_images_edits": Rule(("post",), other=None),
    "openai_models": Rule(("get",), other=None),
}

# ComfyUI's API (api/comfy_views.py), at the root and under /api/: an API key or nothing. Another
# user's prompt is an unknown one: ComfyUI answers {} (200) for both.
COMFY_RULES: dict[str, Rule] = {
    "prompt": Rule(("get", "post"), other=None),
    "history": Rule(("get", "post"), other=None),
    "history_detail": Rule(("get",), other=200),
    "view": Rule(("get",), other=None),
    "upload_image": Rule(("post",), other=None),
    "upload_mask": Rule(("post",), other=None),
    "object_info": Rule(("get",), other=None),
    "object_info_class": Rule(("get",), other=None),
    "queue": Rule(("get", "post"), other=None),
    "interrupt": Rule(("post",), other=None),
    "free": Rule(("post",), other=None),
    "system_stats": Rule(("get",), other=None),
    "models": Rule(("get",), other=None),
    "models_folder": Rule(("get",), other=None),
    "embeddings": Rule(("get",), other=None),
    "extensions": Rule(("get",), other=None),
    "features": Rule(("get",), other=None),
}
for _prefix in ("comfy", "comfy_api"):
    ROUTES.update({f"{_prefix}_{name}": rule for name, rule in COMFY_RULES.items()})


@dataclass(frozen=True)
class Route:
    name: str
    pattern: str
    view: Any

    def __str__(self) -> str:
        return self.name


def walk(patterns: list[Any], prefix: str = "") -> Iterator[Route]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield Route(str(entry.name), prefix + str(entry.pattern), entry.callback)


def api_routes() -> list[Route]:
    return [route for route in walk(get_resolver().url_patterns) if route.pattern.startswith(API_PREFIXES)]


ALL_ROUTES = api_routes()


def test_every_api_route_has_a_rule() -> None:
    names = [route.name for route in ALL_ROUTES]
    assert len(names) == len(set(names)), "every API route needs a name of its own"
    missing = sorted(set(names) - set(ROUTES))
    assert not missing, f"add these routes to ROUTES with their anonymous and other-user rule: {missing}"
    assert not set(ROUTES) - set(names), "ROUTES names routes that no longer exist"


@pytest.mark.parametrize("route", ALL_ROUTES, ids=str)
def test_the_rule_names_every_method_of_a_class_view(route: Route) -> None:
    view_class = getattr(route.view, "view_class", None) or getattr(route.view, "cls", None)
    if view_class is None:
        return  # a function view: its decorators say its methods, ROUTES repeats them
    implemented = {m for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m)}
    assert implemented == set(ROUTES[route.name].methods)


@pytest.fixture
def owned(owner: Api) -> dict[str, str]:
    """The owner's objects, by the URL parameter that names them."""
    assert owner.user is not None
    image = make_image(owner.user, public=False)
    endpoint = WebhookEndpoint.objects.create(user=owner.user, url="https://example.com/hook", secret="s")
    generation_id = str(queued_generation(owner.user).id)
    return {
        "generation_id": generation_id,
        "prompt_id": generation_id,
        "node_class": "KSampler",
        "folder": "checkpoints",
        "image_id": str(image.id),
        "endpoint_id": str(endpoint.id),
        "username": owner.user.username,
    }


def path_of(route: Route, owned: dict[str, str]) -> str:
    path = "/" + route.pattern.replace("^", "").replace("$", "")
    for name, value in owned.items():
        path = path.replace(f"<str:{name}>", value).replace(f"<uuid:{name}>", value)
    assert "<" not in path, f"give the test an object for {path}"
    return path


def cases(*, for_other: bool) -> list[tuple[Route, str]]:
    return [
        (route, method)
        for route in ALL_ROUTES
        if route.name in ROUTES and (not for_other or ROUTES[route.name].other is not None)
        for method in ROUTES[route.name].methods
    ]


def case_id(value: Any) -> str:
    return str(value)


@pytest.mark.parametrize(("route", "method"), cases(for_other=False), ids=case_id)
def test_anonymous_gets_401_or_the_routes_public_status(
    route: Route, method: str, owned: dict[str, str], anonymous: Api
) -> None:
    response = anonymous.request(method, path_of(route, owned))
    assert response.status_code == ROUTES[route.name].anonymous_status(method), response.content[:300]


@pytest.mark.parametrize(("route", "method"), cases(for_other=True), ids=case_id)
def test_another_user_gets_404_on_the_owners_object(
    route: Route, method: str, owned: dict[str, str], other: Api
) -> None:
    response = other.request(method, path_of(route, owned))
    assert response.status_code == ROUTES[route.name].other, response.content[:300]


# Pages (not API routes) that hand out a member's own data: the owner gets it, another member the
# 404 of a missing one, anonymous the sign-in page.
OWNED_PAGES = {"data_export_download": "export_id"}


@pytest.mark.parametrize("name", sorted(OWNED_PAGES))
def test_a_page_with_a_members_data_is_the_owners_only(name: str) -> None:
    owner, other = User.objects.create_user("page-owner"), User.objects.create_user("page-other")
    make_image(owner, public=False)
    export, _ = data_export_request(user=owner, site="http://testserver")
    assert make_pending_exports() == 1
    path = reverse(name, kwargs={OWNED_PAGES[name]: export.id})
    as_owner, as_other = Client(), Client()
    as_owner.force_login(owner)
    as_other.force_login(other)
    assert as_owner.get(path).status_code == 200
    assert as_other.get(path).status_code == 404
    anonymous = Client().get(path)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]

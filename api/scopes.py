"""The scope each API route needs from a key or an OAuth access token (accounts/scopes.py), and
the edge's step that refuses a call outside them with ``403 insufficient_scope`` before any
work is done (after the rate limit counted it: api/middleware.py gives the order).

A session (the browser) is not scoped: scopes limit what a key or a third-party app may do.
A route missing from ``ROUTE_SCOPES`` needs every scope, so a new route is never open to a
narrow token by mistake (tests/test_oauth_scopes.py holds every API route to this table)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve

from accounts.scopes import ALL_SCOPES, BILLING_READ, GALLERY_WRITE, GENERATE, READ
from api.authentication import key_caller
from api.middleware import API_PREFIXES
from core.errors import error_body

PUBLIC = ""  # no scope: the schema and its docs

# URL name -> the scope it needs, or {method: scope} where methods differ (others: every scope).
ROUTE_SCOPES: dict[str, str | dict[str, str]] = {
    "api_schema": PUBLIC,
    "api_docs": PUBLIC,
    "api_generations": {"GET": READ, "POST": GENERATE},
    "api_generation_quote": READ,
    "api_generation_detail": READ,
    "api_generation_cancel": GENERATE,
    "api_uploads": GENERATE,
    "api_image_content": READ,
    "api_image_thumbnail": READ,
    "api_models": READ,
    "api_image_detail": {"GET": READ, "DELETE": GALLERY_WRITE},
    "api_image_upscale": GENERATE,
    "api_image_vary": GENERATE,
    "api_image_remix": GENERATE,
    "api_image_inpaint": GENERATE,
    "api_image_publish": GALLERY_WRITE,
    "api_image_unpublish": GALLERY_WRITE,
    "api_image_like": GALLERY_WRITE,
    "api_image_report": GALLERY_WRITE,
    "api_explore": READ,
    "api_profile_images": READ,
    "api_styles": READ,
    "api_billing": BILLING_READ,
    "openai_images_generations": GENERATE,
    "openai_images_edits": GENERATE,
    "openai_models": READ,
    # Webhooks send a member's events anywhere: only a key or token with every scope manages them.
}
COMFY_READS = (
    "history",
    "history_detail",
    "view",
    "object_info",
    "object_info_class",
    "queue",
    "system_stats",
    "models",
    "models_folder",
    "embeddings",
    "extensions",
    "features",
    "prompt",
)
COMFY_WRITES = ("prompt", "history", "queue", "upload_image", "upload_mask", "interrupt", "free")
for _prefix in ("comfy", "comfy_api"):
    for _name in COMFY_READS:
        ROUTE_SCOPES[f"{_prefix}_{_name}"] = {"GET": READ, "HEAD": READ}
    for _name in COMFY_WRITES:
        reads = ROUTE_SCOPES.get(f"{_prefix}_{_name}", {})
        assert isinstance(reads, dict)
        ROUTE_SCOPES[f"{_prefix}_{_name}"] = {**reads, "POST": GENERATE}


def needed_scopes(url_name: str | None, method: str) -> frozenset[str]:
    needed = ROUTE_SCOPES.get(url_name or "")
    if isinstance(needed, dict):
        needed = needed.get(method, needed.get("GET") if method in ("HEAD", "OPTIONS") else None)
    if needed is None:
        return ALL_SCOPES
    return frozenset([needed]) if needed else frozenset()


def insufficient_scope(missing: frozenset[str]) -> JsonResponse:
    names = sorted(missing)
    wanted = " ".join(names)
    message = f"This key or access token lacks the scope this call needs: {wanted}."
    response = JsonResponse(error_body("insufficient_scope", message, {"required_scopes": names}), status=403)
    # RFC 6750: a resource server names the scope that was missing.
    response["WWW-Authenticate"] = f'Bearer realm="api", error="insufficient_scope", scope="{wanted}"'
    return response


class ScopeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIXES):
            caller = key_caller(request)
            if caller is not None and caller.user is not None and not caller.scopes >= ALL_SCOPES:
                try:
                    url_name = resolve(request.path_info).url_name
                except Resolver404:
                    url_name = None  # a 404 either way; nothing to guard
                missing = needed_scopes(url_name, request.method or "GET") - caller.scopes
                if url_name is not None and missing:
                    return insufficient_scope(missing)
        return self.get_response(request)

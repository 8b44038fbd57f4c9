"""``API-Version`` on every API response, and ``Deprecation``/``Sunset``/``Link`` on the routes
named in ``ATELIER_DEPRECATED_ROUTES`` (RFC 9745, RFC 8594)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from api.middleware import API_PREFIXES


class ApiVersionMiddleware:
    """``API-Version`` on every API response; ``Deprecation``/``Sunset`` on deprecated routes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith(API_PREFIXES):
            return response
        response["API-Version"] = settings.ATELIER_API_VERSION
        match = getattr(request, "resolver_match", None)
        notice = settings.ATELIER_DEPRECATED_ROUTES.get(match.url_name if match else "")
        if notice:
            response["Deprecation"] = notice.get("deprecation", "true")
            if notice.get("sunset"):
                response["Sunset"] = notice["sunset"]
            if notice.get("link"):
                response["Link"] = f'<{notice["link"]}>; rel="deprecation"'
        return response

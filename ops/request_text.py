"""Refuse a NUL character in a request's path or query string, before any view sees it.

No name, id or filter of ours contains one, and PostgreSQL cannot store or compare text holding one:
a NUL that reached a query (`/api/v1/users/a%00b/images`, `?model=a%00b`) was a 500. JSON bodies
are checked by their serializers (DRF's text fields refuse NUL), forms by Django's.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from core.errors import error_body


class NulCharacterMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            return refusal("path", "The path cannot contain NUL characters.")
        bad = sorted({name for name, values in request.GET.lists() if "\x00" in name + "".join(values)})
        if bad:
            return refusal(", ".join(bad), "Query parameters cannot contain NUL characters.")
        return self.get_response(request)


def refusal(field: str, message: str) -> HttpResponse:
    body = error_body("validation_error", f"Invalid field(s): {field}. {message}", {field: [message]})
    return JsonResponse(body, status=400)

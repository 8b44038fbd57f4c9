"""Refuse a request whose body is larger than the server accepts, before any of it is read.

Django reads a multipart body whole (files to temporary files) before a view can look at a file's
size; a declared Content-Length past ``ATELIER_REQUEST_MAX_BYTES`` is answered ``413`` here
instead. Bodies that declare no length are bounded by the web server (gunicorn reads only what is
declared; the reverse proxy's ``client_max_body_size``, docs/deploy.md) and each file is read with
a cap (generations/uploads.py).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from core.errors import error_body


class RequestSizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        limit = settings.ATELIER_REQUEST_MAX_BYTES
        if declared > limit:
            message = f"The request body is {declared} bytes; at most {limit} are accepted."
            response = JsonResponse(error_body("request_too_large", message, {"limit": limit}), status=413)
            response["Connection"] = "close"  # the rest of the body is not read
            return response
        return self.get_response(request)

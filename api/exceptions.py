"""DRF's exception handler (``REST_FRAMEWORK["EXCEPTION_HANDLER"]``): every error of the API is
``{"error": {"code", "message", "details"}}`` with a code from core/errors.py."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from core.errors import CATALOGUE, ApiError, error_body

_DRF_CODES: list[tuple[type[Exception], str]] = [
    (exceptions.NotAuthenticated, "not_authenticated"),
    (exceptions.AuthenticationFailed, "authentication_failed"),
    (exceptions.PermissionDenied, "permission_denied"),
    (exceptions.NotFound, "not_found"),
    (Http404, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.ParseError, "malformed_request"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "rate_limited"),
]


# Codes a serializer may give one field's error (an ErrorDetail's code). When that is the only
# error of the request, the response carries it instead of the generic validation_error.
FIELD_ERROR_CODES = frozenset({"sampler_not_supported", "lora_not_found"})


def validation_code(exc: exceptions.ValidationError) -> str:
    codes = exc.get_codes()
    if isinstance(codes, dict) and len(codes) == 1:
        (field_codes,) = codes.values()
        first = field_codes[0] if isinstance(field_codes, list) and len(field_codes) == 1 else None
        if isinstance(first, str) and first in FIELD_ERROR_CODES:  # nested fields give dicts
            return first
    return "validation_error"


def validation_message(details: dict[str, Any]) -> str:
    fields = ", ".join(sorted(details)) or "request"
    return f"Invalid field(s): {fields}."


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApiError):
        return Response(exc.body(), status=exc.status, headers=exc.headers)
    if isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        code = validation_code(exc)
        return Response(error_body(code, validation_message(details), details), status=400)
    for exc_type, code in _DRF_CODES:
        if isinstance(exc, exc_type):
            status, message = CATALOGUE[code]
            detail = getattr(exc, "detail", None)
            response = Response(error_body(code, str(detail) if detail else message), status=status)
            if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
                response["WWW-Authenticate"] = 'Bearer realm="api"'
            wait = getattr(exc, "wait", None)
            if wait:
                response["Retry-After"] = str(int(wait) + 1)
            return response
    return None

"""One exception class per error code the API documents."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    code = "api_error"

    def __init__(self, message: str, *, status: int, code: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.code, self.details = status, code, details or {}


class ValidationError(ApiError):
    code = "validation_error"


class AuthenticationError(ApiError):
    code = "not_authenticated"


class InsufficientCredits(ApiError):
    code = "insufficient_credits"


class NotFound(ApiError):
    code = "not_found"


class RateLimited(ApiError):
    code = "rate_limited"


class QueueFull(RateLimited):
    code = "queue_full"


BY_CODE: dict[str, type[ApiError]] = {
    "validation_error": ValidationError,
    "malformed_request": ValidationError,
    "not_authenticated": AuthenticationError,
    "authentication_failed": AuthenticationError,
    "insufficient_credits": InsufficientCredits,
    "not_found": NotFound,
    "rate_limited": RateLimited,
    "queue_full": QueueFull,
}


def error_from(status: int, body: Any) -> ApiError:
    error = body.get("error", {}) if isinstance(body, dict) else {}
    code = error.get("code", "api_error")
    cls = BY_CODE.get(code, ApiError)
    return cls(error.get("message", f"HTTP {status}"), status=status, code=code, details=error.get("details"))

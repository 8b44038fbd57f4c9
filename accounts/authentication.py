from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.services import api_key_user


def bearer_token(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <prefix.secret>``."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        token = bearer_token(header)
        if token is None:
            return None
        # The rate limiter already looked the key up for this request.
        cached = getattr(request._request, "api_key_user", None)
        user = cached if cached is not None else api_key_user(token)
        if user is None:
            raise exceptions.AuthenticationFailed("The API key is invalid or revoked.")
        return user, None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.models import User
from accounts.services import api_key_user


def bearer_token(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def key_user(request: HttpRequest, token: str) -> User | None:
    """The user of this request's API key; looked up once a request (the rate limiter, which runs
    first, keeps what it found on the request)."""
    cached = getattr(request, "api_key_user", None)
    return cached if isinstance(cached, User) else api_key_user(token)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <prefix.secret>``."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        token = bearer_token(header)
        if token is None:
            return None
        user = key_user(request._request, token)
        if user is None:
            raise exceptions.AuthenticationFailed("The API key is invalid or revoked.")
        return user, None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'

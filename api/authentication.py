"""Who calls the API with ``Authorization: Bearer <prefix.secret>`` (an API key) or ``Bearer
<access token>`` (a third-party app's OAuth token): the key or token is looked up once per request
(by ``BearerKeyMiddleware``, the edge's first step, api/middleware.py) and every later reader
(the rate limiter, the scope check, idempotency, DRF, the OpenAI-style views) asks ``key_caller``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.authentication import bearer_token, is_api_key
from accounts.models import User
from accounts.oauth import access_token_owner
from accounts.services import api_key_owner
from api.middleware import API_PREFIXES
from billing.ratelimit import plan_columns

_ATTRIBUTE = "_atelier_key_caller"
REFUSED = {
    "key": "The API key is invalid or revoked.",
    "app": "The access token is invalid, expired or revoked.",
}


@dataclass(frozen=True)
class KeyCaller:
    prefix: str  # the key's prefix, or "oauth:<token id>" (rate limits count per key or token)
    user: User | None  # None: a malformed, unknown, expired or revoked key or token
    plan: tuple[Any, ...] | None  # the plan's columns (billing.ratelimit.plan_columns), same query
    scopes: frozenset[str] = frozenset()  # what it may do (accounts/scopes.py, api/scopes.py)


def looked_up(token: str) -> KeyCaller:
    # The key's (or token's) user and their plan's rate in one query.
    also, joins = plan_columns()
    if is_api_key(token):
        key = api_key_owner(token, also=also, joins=joins)
        if key is None:
            return KeyCaller(prefix=token.partition(".")[0], user=None, plan=None)
        return KeyCaller(prefix=token.partition(".")[0], user=key[0], plan=key[2], scopes=key[1])
    app = access_token_owner(token, also=also, joins=joins)
    if app is None:
        return KeyCaller(prefix="oauth:unknown", user=None, plan=None)
    token_id, user, scopes, plan = app
    return KeyCaller(prefix=f"oauth:{token_id}", user=user, plan=plan, scopes=scopes)


def key_caller(request: HttpRequest) -> KeyCaller | None:
    """The request's Bearer key and its owner; None without a Bearer header. Looked up on first
    use and kept on the request, so a request costs one lookup whoever asks."""
    if hasattr(request, _ATTRIBUTE):
        known: KeyCaller | None = getattr(request, _ATTRIBUTE)
        return known
    header = request.META.get("HTTP_AUTHORIZATION", "")
    token = bearer_token(header) if header else None
    caller = looked_up(token) if token is not None else None
    setattr(request, _ATTRIBUTE, caller)
    return caller


def key_user(request: HttpRequest) -> User | None:
    caller = key_caller(request)
    return caller.user if caller is not None else None


def api_user(request: HttpRequest) -> User | None:
    """The caller: the API key's user, else the session's (a Bearer key wins, as in DRF's order)."""
    caller = key_caller(request)
    if caller is not None:
        return caller.user
    user = request.user
    return user if isinstance(user, User) and user.is_authenticated else None


class BearerKeyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIXES):
            key_caller(request)
        return self.get_response(request)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """DRF's view of the edge's result: ``Authorization: Bearer <prefix.secret>``."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        caller = key_caller(request._request)
        if caller is None:
            return None  # no Bearer header: the session may authenticate
        if caller.user is None:
            kind = "app" if caller.prefix.startswith("oauth:") else "key"
            raise exceptions.AuthenticationFailed(REFUSED[kind])
        return caller.user, None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'

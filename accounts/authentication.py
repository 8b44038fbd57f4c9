"""The ``Authorization`` header's Bearer token (the API edge, api/authentication.py, and the
WebSocket's ApiKeyMiddleware look it up): an API key (``prefix.secret``) or a third-party app's
OAuth access token (no dot in it)."""

from __future__ import annotations

from accounts.models import User
from accounts.oauth import access_token_owner
from accounts.services import api_key_owner


def bearer_token(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def is_api_key(token: str) -> bool:
    return "." in token


def bearer_owner(token: str) -> tuple[User, frozenset[str]] | None:
    """The active member a key or access token acts for, and its scopes; None when it is
    malformed, unknown, expired or revoked."""
    if is_api_key(token):
        key = api_key_owner(token)
        return (key[0], key[1]) if key else None
    app = access_token_owner(token)
    return (app[1], app[2]) if app else None

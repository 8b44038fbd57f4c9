"""The ``Authorization`` header's Bearer token (the API edge, api/authentication.py, and the
WebSocket's ApiKeyMiddleware look its key up)."""

from __future__ import annotations


def bearer_token(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()

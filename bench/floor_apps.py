"""The servers of bench/floor.py: an ASGI app that does nothing, and Django with no middleware.

``raw`` answers every HTTP request with ``{}``: what the ASGI server alone costs. ``bare_django``
(built on first use, with ``bench.floor_settings``) is Atelier's ASGI handler around one view and
no middleware: what Django's request machinery costs before any of Atelier's own work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from django.http import HttpRequest, JsonResponse

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def raw(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


def empty(request: HttpRequest) -> JsonResponse:
    return JsonResponse({})


_django: Any = None


async def bare_django(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    global _django
    if _django is None:
        import django

        django.setup(set_prefix=False)
        from core.asgi_http import PooledASGIHandler

        _django = PooledASGIHandler()
    await _django(scope, receive, send)

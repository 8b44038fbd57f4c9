"""ComfyUI clients send the API key three ways: ``Authorization: Bearer`` (Open WebUI, Krita),
``?token=`` (the common login add-on's convention), inside a base URL, for clients that take
only an address (``http://host/comfy/<key>/prompt``), or as HTTP Basic credentials whose
password is the key (clients written for Basic-auth add-ons). This ASGI wrapper, outermost (before any
logging), turns the last two into the header and takes the key out of the path and query, so
the rest of the stack, the request logs included, sees an ordinary request and never the key.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

from api.middleware import is_comfy_path

BASE_URL_PREFIX = "/comfy/"
KEY_IN_PATH = re.compile(r"/comfy/[^/?\s]+")
KEY_IN_QUERY = re.compile(r"(?<=[?&]token=)[^&\s]+")


def redacted(text: str) -> str:
    """A request line or URL with any key in it replaced (for servers that log the raw line)."""
    return KEY_IN_QUERY.sub("<key>", KEY_IN_PATH.sub("/comfy/<key>", text))


def normalized(scope: dict[str, Any]) -> dict[str, Any]:
    path: str = scope.get("path", "")
    key = None
    if path.startswith(BASE_URL_PREFIX):
        key, _, rest = path[len(BASE_URL_PREFIX) :].partition("/")
        path = "/" + rest
    if not is_comfy_path(path):
        if key is None:
            return scope
        return {**scope, "path": path, "raw_path": path.encode()}  # not a ComfyUI route: a 404
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    tokens = [value for name, value in query if name == "token"]
    key = key or (tokens[0] if tokens else None)
    headers = [(name, value) for name, value in scope.get("headers", []) if name != b"authorization"]
    given = [value for name, value in scope.get("headers", []) if name == b"authorization"]
    basic = basic_key(given[0]) if given else None
    if given and basic is None:
        headers.append((b"authorization", given[0]))  # a Bearer header wins over the rest
    elif basic or key:
        headers.append((b"authorization", f"Bearer {basic or key}".encode("latin-1", "replace")))
    query_string = urlencode([(n, v) for n, v in query if n != "token"]).encode("latin-1")
    return {
        **scope,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query_string,
        "headers": headers,
    }


def basic_key(header: bytes) -> str | None:
    """HTTP Basic credentials (clients that only know ComfyUI's login add-ons' Basic auth): the
    password is the API key (or the user name, when the password is empty)."""
    scheme, _, encoded = header.decode("latin-1").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return password or user or None


class ComfyKeyMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("type") in ("http", "websocket"):
            scope = normalized(scope)
        return await self.app(scope, receive, send)


class ComfyKeyWSGIMiddleware:
    """The same for the WSGI tier (gunicorn serves HTTP in production)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        headers = (
            [(b"authorization", environ["HTTP_AUTHORIZATION"].encode("latin-1"))]
            if "HTTP_AUTHORIZATION" in environ
            else []
        )
        scope = {
            "path": environ.get("PATH_INFO", ""),
            "query_string": environ.get("QUERY_STRING", "").encode("latin-1"),
            "headers": headers,
        }
        changed = normalized(scope)
        if changed is not scope:
            environ = dict(environ)
            environ["PATH_INFO"] = changed["path"]
            environ["QUERY_STRING"] = changed.get("query_string", b"").decode("latin-1")
            environ["RAW_URI"] = environ["REQUEST_URI"] = changed["path"]
            for name, value in changed.get("headers", []):
                if name == b"authorization":
                    environ["HTTP_AUTHORIZATION"] = value.decode("latin-1")
        return self.app(environ, start_response)


def redact_daphne_access_log() -> None:
    """daphne writes the raw request URI (query included) to its access log, before the app sees
    the request: make its access log write `redacted` URIs. Called once by config/asgi.py."""
    try:
        from daphne.access import AccessLogGenerator
    except ImportError:  # served by another ASGI server
        return
    if getattr(AccessLogGenerator, "atelier_redacted", False):
        return
    original = AccessLogGenerator.__call__

    def call(self: Any, protocol: Any, action: Any, details: dict[str, Any]) -> Any:
        if isinstance(details.get("path"), str):
            details = {**details, "path": redacted(details["path"])}
        return original(self, protocol, action, details)

    AccessLogGenerator.__call__ = call
    AccessLogGenerator.atelier_redacted = True

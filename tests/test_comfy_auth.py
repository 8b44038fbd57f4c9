"""A ComfyUI client's key in its base URL or ``?token=`` becomes the Bearer header before
anything sees the request, and leaves the path, the query and the access log."""

from __future__ import annotations

import base64
import io
from typing import Any

from daphne.access import AccessLogGenerator

from api.comfy_auth import ComfyKeyWSGIMiddleware, normalized, redact_daphne_access_log, redacted

KEY = "abc123.s3cret"


def scope(path: str, query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers or [],
    }


def test_a_key_in_the_base_url_becomes_the_bearer_header() -> None:
    changed = normalized(scope(f"/comfy/{KEY}/prompt"))
    assert changed["path"] == "/prompt" and changed["raw_path"] == b"/prompt"
    assert (b"authorization", f"Bearer {KEY}".encode()) in changed["headers"]
    assert normalized(scope(f"/comfy/{KEY}/api/history/x"))["path"] == "/api/history/x"
    assert normalized(scope(f"/comfy/{KEY}/ws", b"clientId=1"))["query_string"] == b"clientId=1"


def test_a_token_parameter_becomes_the_header_and_leaves_the_query() -> None:
    changed = normalized(scope("/view", f"filename=a.png&token={KEY}&type=output".encode()))
    assert changed["query_string"] == b"filename=a.png&type=output"
    assert (b"authorization", f"Bearer {KEY}".encode()) in changed["headers"]


def test_a_header_already_there_wins_and_other_paths_are_left_alone() -> None:
    mine = [(b"authorization", b"Bearer other.key")]
    changed = normalized(scope("/prompt", f"token={KEY}".encode(), mine))
    assert changed["headers"] == mine
    untouched = scope("/api/v1/generations", f"token={KEY}".encode())
    assert normalized(untouched) is untouched  # ?token= is only ComfyUI's convention
    assert normalized(scope(f"/comfy/{KEY}/admin/"))["headers"] == []


def test_the_wsgi_tier_does_the_same() -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        return []

    middleware = ComfyKeyWSGIMiddleware(app)
    middleware({"PATH_INFO": f"/comfy/{KEY}/history", "QUERY_STRING": "max_items=2"}, None)
    assert seen["PATH_INFO"] == "/history" and seen["HTTP_AUTHORIZATION"] == f"Bearer {KEY}"
    assert KEY not in seen["RAW_URI"]


def test_the_access_log_never_shows_a_key() -> None:
    line = f"GET /comfy/{KEY}/view?filename=a.png&token={KEY} HTTP/1.1"
    assert KEY not in redacted(line)
    assert redacted(line) == "GET /comfy/<key>/view?filename=a.png&token=<key> HTTP/1.1"


def test_daphnes_access_log_never_shows_a_key() -> None:
    redact_daphne_access_log()
    stream = io.StringIO()
    log = AccessLogGenerator(stream)
    details = {
        "path": f"/comfy/{KEY}/view?token={KEY}",
        "status": 200,
        "method": "GET",
        "client": "1.2.3.4:5",
    }
    log("http", "complete", {**details, "time_taken": 0.1, "size": 10})
    log("websocket", "connected", {"path": f"/comfy/{KEY}/ws", "client": "1.2.3.4:5"})
    assert "/comfy/<key>/view" in stream.getvalue() and KEY not in stream.getvalue()


def test_basic_credentials_carry_the_key_as_their_password() -> None:
    basic = base64.b64encode(f"anyone:{KEY}".encode())
    changed = normalized(scope("/prompt", headers=[(b"authorization", b"Basic " + basic)]))
    assert changed["headers"] == [(b"authorization", f"Bearer {KEY}".encode())]
    garbage = [(b"authorization", b"Basic !!!")]
    assert normalized(scope("/prompt", headers=garbage))["headers"] == garbage

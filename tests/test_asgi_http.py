"""daphne's HTTP handler (core/asgi_http.py): one synchronous call per request, on a reused pool."""

from __future__ import annotations

import asyncio
import json
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.core import signals

from core.asgi_http import PooledASGIHandler


def scope(path: str, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


Answer = tuple[int, bytes, dict[bytes, bytes]]  # status, body, headers (lower-case names)


async def call(handler: PooledASGIHandler, request: dict[str, Any], body: bytes = b"") -> Answer:
    communicator = ApplicationCommunicator(handler, request)
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await communicator.receive_output(10)
    content = b""
    while True:
        message = await communicator.receive_output(10)
        content += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(10)
    return start["status"], content, {name.lower(): value for name, value in start["headers"]}


def served_with_headers(handler: PooledASGIHandler, request: dict[str, Any], body: bytes = b"") -> Answer:
    """The request through the handler on an event loop of its own thread, as daphne runs it
    (whatever loop an earlier test left in this one)."""
    with ThreadPoolExecutor(1) as loop_thread:
        return loop_thread.submit(asyncio.run, call(handler, request, body)).result()


def served(handler: PooledASGIHandler, request: dict[str, Any], body: bytes = b"") -> tuple[int, bytes]:
    status, content, _ = served_with_headers(handler, request, body)
    return status, content


@pytest.fixture
def handler() -> PooledASGIHandler:
    return PooledASGIHandler()


def test_a_request_runs_its_signals_and_view_in_one_reused_thread(handler: PooledASGIHandler) -> None:
    seen: list[tuple[str, int]] = []

    def started(**kwargs: Any) -> None:
        seen.append(("started", threading.get_ident()))

    def finished(**kwargs: Any) -> None:
        seen.append(("finished", threading.get_ident()))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        for _ in range(3):
            status, content = served(handler, scope("/healthz"))
            assert status == 200
            assert json.loads(content)["status"] == "ok"
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert [name for name, _ in seen] == ["started", "finished"] * 3
    for index in range(0, 6, 2):
        assert seen[index][1] == seen[index + 1][1]  # close_old_connections meets the view's thread
    assert seen[0][1] != threading.get_ident()
    # Sequential requests reuse the pool's thread instead of starting one each.
    assert len({ident for _, ident in seen}) == 1


@pytest.mark.django_db
def test_a_body_over_the_limit_is_refused_before_any_view(handler: PooledASGIHandler) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"99999999")]
    status, content = served(handler, scope("/api/v1/generations", "POST", headers), b"{}")
    assert status == 413
    assert json.loads(content)["error"]["code"]


def test_a_file_is_served_whole_from_the_requests_thread(handler: PooledASGIHandler) -> None:
    """WhiteNoise answers with a FileResponse, as the image view does: its bytes go out with one
    request_finished, from the view's thread, without Django's hop to list a synchronous iterator
    (and its warning)."""
    seen: list[tuple[str, int]] = []

    def finished(**kwargs: Any) -> None:
        seen.append(("finished", threading.get_ident()))

    signals.request_finished.connect(finished)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Django's "must consume synchronous iterators"
            status, content, headers = served_with_headers(handler, scope("/static/app.css"))
    finally:
        signals.request_finished.disconnect(finished)
    expected = (settings.BASE_DIR / "static" / "app.css").read_bytes()
    assert status == 200 and content == expected
    assert headers[b"content-length"] == str(len(expected)).encode()
    assert headers[b"content-type"].startswith(b"text/css")
    assert len(seen) == 1  # request_finished once, as for any response

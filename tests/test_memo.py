"""core/memo.py: a value read once per web request, and every time outside one."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from core.memo import RequestMemoMiddleware, once


def test_inside_a_request_a_value_is_computed_once_and_outside_every_time() -> None:
    calls: list[str] = []

    def read() -> int:
        calls.append("read")
        return len(calls)

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(f"{once('k', read)} {once('k', read)} {once('other', read)}")

    middleware = RequestMemoMiddleware(view)
    assert bytes(middleware(HttpRequest())).endswith(b"1 1 2")
    assert bytes(middleware(HttpRequest())).endswith(b"3 3 4")  # a new request reads again
    assert (once("k", read), once("k", read)) == (5, 6)  # outside a request: never kept

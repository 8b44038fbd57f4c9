"""Values computed at most once per web request, or per worker batch.

A submission reads its pool's state (has it a live worker, how many, how long its jobs take) for
the queued event, for the ETA and again for the response: the same Redis reads three or four
times within milliseconds; a worker's batch reads each user's webhook endpoints for every event.
Inside a ``scope`` (each web request: ``RequestMemoMiddleware``; a batch's events: the worker)
``once`` keeps the first answer until the outermost scope ends; outside one (the dispatcher,
shells) it computes every time, so nothing is ever stale for longer than a request or a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from django.http import HttpRequest, HttpResponseBase

T = TypeVar("T")

_memo: ContextVar[dict[Hashable, Any] | None] = ContextVar("atelier_request_memo", default=None)


def once(key: Hashable, compute: Callable[[], T]) -> T:
    store = _memo.get()
    if store is None:
        return compute()
    if key not in store:
        store[key] = compute()
    return store[key]  # type: ignore[no-any-return]


@contextmanager
def scope() -> Iterator[None]:
    """What ``once`` reads inside is kept until the outermost scope ends (a nested one shares it)."""
    if _memo.get() is not None:
        yield
        return
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


class RequestMemoMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        with scope():
            return self.get_response(request)

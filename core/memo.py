"""Values computed at most once per web request.

A submission reads its pool's state (has it a live worker, how many, how long its jobs take) for
the queued event, for the ETA and again for the response: the same Redis reads three or four
times within milliseconds. Inside a request (``RequestMemoMiddleware``) ``once`` keeps the first
answer for the rest of the request; outside one (workers, the dispatcher, shells) it computes
every time, so nothing is ever stale for longer than a request, except inside a ``scope()``
block, which a worker opens around one job's run and around a batch's finish.
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


def active() -> bool:
    """Inside a web request: what ``remember`` keeps is used."""
    return _memo.get() is not None


def remember(key: Hashable, value: object) -> None:
    """Keep ``value`` as ``key``'s answer for the rest of the request (read ahead, several at once)."""
    store = _memo.get()
    if store is not None:
        store[key] = value


@contextmanager
def scope() -> Iterator[None]:
    """Values computed once inside this block outside a request too (a worker's job: its events
    read each user's webhook endpoints once); within a request or an outer block, that one's
    values are shared."""
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
        token = _memo.set({})
        try:
            return self.get_response(request)
        finally:
            _memo.reset(token)

"""Django's ASGI handler with its middleware chain built the way WSGI builds it: synchronous.

Django builds an ASGI handler's middleware chain around its asynchronous core. Every middleware and
view of Atelier is synchronous (and allauth's accepts either), so the chain Django builds crosses
between threads three times per request: into a worker thread for the outer middleware, back to the
event loop (``async_to_sync``) around the core, into the thread again (``sync_to_async``) for the
view. Built synchronous, the chain is entered once, in the request's thread, and runs through to
the view there: the request costs one thread switch instead of three (issue 16: the embedded
layout serves its HTTP through daphne). An asynchronous view would still run (Django's synchronous
core wraps it); there is none today.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class SyncChainASGIHandler(ASGIHandler):
    _middleware_chain: Callable[..., Any] | None  # set by load_middleware (not in django-stubs)

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        chain = self._middleware_chain
        assert chain is not None
        # thread_sensitive as Django's own adaptation: one thread per request (its
        # ThreadSensitiveContext), so the request_started/finished signals meet the view's
        # database connection in the same thread.
        self._middleware_chain = sync_to_async(chain, thread_sensitive=True)

"""Django's ASGI handler, served the way WSGI serves: one synchronous call per request, in a pool.

Every middleware and view of Atelier is synchronous (allauth's middleware accepts either), and in
the embedded layout daphne serves all HTTP (issue 16 measures it). Django's own ASGI handler builds
the middleware chain around an asynchronous core and, per request, starts a thread of its own
(``ThreadSensitiveContext``) and crosses between it and the event loop five times: the
``request_started`` signal, the outer middleware, back to the loop around the core, the view, and
``response.close()`` with the ``request_finished`` signal.

This handler builds the chain synchronous, as for WSGI, and runs everything synchronous of a request
— both signals, the request object, middleware and view — in one call on a reused thread of a
bounded pool; the event loop only reads the body and writes the response. What stays the same:
the signals run in the thread that runs the view, so ``close_old_connections`` meets that thread's
database connection, as under WSGI; the pool has room for the requests that load shedding lets in
or keeps waiting (``ATELIER_WEB_MAX_CONCURRENCY`` + ``ATELIER_WEB_MAX_WAITING``), so
``LoadSheddingMiddleware`` still decides who waits and who gets 503. What differs: a client that
disconnects while its view runs is noticed when the response is written, not before (a synchronous
view could not be interrupted anyway). An asynchronous view would still run (Django's synchronous
core wraps it); there is none today.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponse, HttpResponseBase
from django.urls import set_script_prefix

IN_MEMORY_BYTES = 16 * 2**20


def small(response: FileResponse) -> bool:
    length = response.get("Content-Length")
    return length is not None and length.isdigit() and int(length) <= IN_MEMORY_BYTES


def in_memory(response: FileResponse) -> HttpResponse:
    """A file's bytes read here, in the request's thread. Django's ASGI handler reads a file
    response whole anyway (a synchronous iterator, listed in a thread of its own, with a warning),
    and closes it in yet another hop: an image cost three hops between threads and the event loop
    instead of one."""
    response.block_size = IN_MEMORY_BYTES  # one read
    try:
        plain = HttpResponse(response.getvalue(), status=response.status_code, reason=response.reason_phrase)
    finally:
        if response.file_to_stream is not None:
            response.file_to_stream.close()
    plain.headers = response.headers
    plain.cookies = response.cookies
    return plain


def pool_size() -> int:
    limit = settings.ATELIER_WEB_MAX_CONCURRENCY
    return limit + settings.ATELIER_WEB_MAX_WAITING if limit else 64


class PooledASGIHandler(ASGIHandler):
    _middleware_chain: Callable[..., Any] | None  # set by load_middleware (not in django-stubs)

    def __init__(self) -> None:
        super().__init__()
        self.pool = ThreadPoolExecutor(max_workers=pool_size(), thread_name_prefix="http")

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django serves HTTP only, not {scope['type']}")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            serve = sync_to_async(self.serve, thread_sensitive=False, executor=self.pool)
            response = await serve(scope, body_file)
            await self.send_response(response, send)
            if response.streaming:  # its content was produced while sending
                await sync_to_async(response.close, thread_sensitive=False, executor=self.pool)()
        finally:
            body_file.close()

    def serve(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, refused = self.create_request(scope, body_file)
        response = self.get_response(request) if request is not None else refused
        assert response is not None  # create_request gives a request or a response
        if isinstance(response, FileResponse):
            if small(response):
                response = in_memory(response)
            else:
                response.block_size = self.chunk_size  # the server chunks the bytes
        setattr(response, "_handler_class", self.__class__)  # noqa: B010 (close() names it)
        if not response.streaming:
            response.close()  # request_finished, here, in the request's thread
        return response

"""The API edge's middleware, in the one order that works, written down here and nowhere else.

``config/settings.py`` splices ``API_MIDDLEWARE`` into ``MIDDLEWARE`` right after Django's
``AuthenticationMiddleware`` (the session's user), and ``tests/test_api_edge.py`` holds it there.
Each step runs only for the API's paths (``API_PREFIXES``):

1. ``BearerKeyMiddleware`` finds who calls with ``Authorization: Bearer <key>``: the key is looked
   up once per request, here, and DRF's ``ApiKeyAuthentication`` and the OpenAI-style views read
   that result instead of looking it up again.
2. ``RateLimitMiddleware`` counts the request per key, user or address (it needs 1 to know
   which) and answers ``429`` before any work is done; every response gets ``RateLimit-*``.
3. ``ApiVersionMiddleware`` adds ``API-Version`` and the deprecation headers to every API
   response that got past the rate limit, a replayed one included (so it wraps 5).
4. ``ScopeMiddleware`` (api/scopes.py) answers ``403 insufficient_scope`` to a key or OAuth
   access token calling a route outside its scopes; it needs 1, runs after 2 so that a refused
   call still counts, and before 5 so that a narrow token cannot replay a wider one's response.
5. ``IdempotencyMiddleware`` replays the first response to a repeated ``Idempotency-Key``; it
   needs 1 for whose key it is, and runs after 2 so that a replay still counts against the limit.

The ComfyUI-compatible surface (api/comfy_views.py) is served at ComfyUI's own paths, at the
root and under ``/api/``: its root paths are API paths too.

Free of imports: settings read it before Django is set up.
"""

from __future__ import annotations

# ComfyUI's routes at the root (a path is one of them, or below one of them).
COMFY_ROOTS = (
    "/prompt",
    "/history",
    "/view",
    "/upload/",
    "/object_info",
    "/queue",
    "/interrupt",
    "/free",
    "/system_stats",
    "/models",
    "/embeddings",
    "/extensions",
    "/features",
)
API_PREFIXES = ("/api/", "/v1/", *COMFY_ROOTS)


def is_comfy_path(path: str) -> bool:
    """Whether the path is one of ComfyUI's routes (at the root or under /api/), or its /ws."""
    path = path.removeprefix("/api")
    if path == "/ws":
        return True
    return any(path == root.rstrip("/") or path.startswith(root.rstrip("/") + "/") for root in COMFY_ROOTS)


API_MIDDLEWARE = [
    "api.authentication.BearerKeyMiddleware",
    "api.ratelimit.RateLimitMiddleware",
    "api.versioning.ApiVersionMiddleware",
    "api.scopes.ScopeMiddleware",
    "api.idempotency.IdempotencyMiddleware",
]

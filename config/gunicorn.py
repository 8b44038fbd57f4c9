"""gunicorn settings for the HTTP tier (pages and /api/, /v1/): ``gunicorn -c config/gunicorn.py``.

HTTP is served by WSGI workers and WebSockets (/ws/) by daphne: under daphne every sync view hops
from the event loop to a thread and back, which cost a third of the API's CPU (docs/benchmarks.md,
bench/queue.py). The reverse proxy in front sends /ws/ to daphne and everything else here.
"""

import gc
import os
from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from api.comfy_auth import redacted

wsgi_app = "config.wsgi:application"
bind = os.environ.get("WEB_BIND", "0.0.0.0:8000")
# A process per core, each with a few threads: they keep client connections alive, overlap one
# request's database waits with another's work, and let a few `Prefer: wait` requests block
# without stopping the rest (under daphne all sync views of a process share one thread).
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", str(os.cpu_count() or 1)))
threads = int(os.environ.get("WEB_THREADS", "4"))
# The control socket's default path is one per user: two servers on one machine would share it.
control_socket_disable = True
accesslog = os.environ.get("WEB_ACCESS_LOG") or None


class RedactingLogger(Logger):
    """The access log without API keys: gunicorn logs the raw request line, before the app turns
    a ComfyUI client's key in the path or ``?token=`` into a header (api/comfy_auth.py)."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        found: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name in ("r", "U", "q"):
            if isinstance(found.get(name), str):
                found[name] = redacted(found[name])
        return found


logger_class = RedactingLogger


def post_worker_init(worker: Any) -> None:
    """Once the app is loaded: its objects (Django, the models, the URL tree) are never garbage,
    so the collector stops scanning them, and a request's few thousand short-lived objects no
    longer trigger a collection each. About 4% of an API submission's CPU."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)

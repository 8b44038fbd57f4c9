"""The worker's database connections between jobs.

Django's request cycle closes a connection after each request unless ``CONN_MAX_AGE`` says to keep
it, and the embedded default keeps none (0: the ASGI web tier runs requests on short-lived threads,
where kept connections would leak). A worker is one long-lived process with two threads that use
the database (the claim loop and the finisher): there, closing after every job meant opening a
new connection for the next, about a tenth of a trivial job's time (bench/latency.py). So the
worker keeps its connections however ``CONN_MAX_AGE`` is set, and still replaces one that broke
(an error left it unusable) or that passed a positive ``CONN_MAX_AGE``. With a connection pool
(``DATABASE_POOL_MAX``) closing is only handing the connection back, so that is left as it was.
"""

from __future__ import annotations

from django.db import connections


def replace_broken_connections() -> None:
    """What ``close_old_connections`` does between requests, with a max age of 0 read as "keep"."""
    for connection in connections.all(initialized_only=True):
        pooled = "pool" in connection.settings_dict.get("OPTIONS", {})
        if connection.settings_dict["CONN_MAX_AGE"] == 0 and not pooled:
            connection.close_at = None  # set by each connect(): None keeps the connection
        connection.close_if_unusable_or_obsolete()

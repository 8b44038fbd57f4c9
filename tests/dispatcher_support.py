"""The dispatcher's loop in a thread of the test process, as the dispatcher process runs it (so a
test's settings apply to it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from django.db import connection

from generations.dispatcher import tick


@contextmanager
def dispatcher_running(pause: float = 0.2) -> Iterator[None]:
    """``tick()`` every ``pause`` seconds while the block runs; its errors are raised at the end."""
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.is_set():
                tick()
                time.sleep(pause)
        finally:
            connection.close()  # this thread's own connection, or the test DB cannot be dropped

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(loop)
        try:
            yield
        finally:
            stop.set()
            running.result()

"""Encode, store and finish jobs on a background thread while the device denoises the next batch.

PNG encoding and file writes are CPU work that a plain loop does between two denoising runs;
here they overlap with the next run. The queue is short (two batches), so a slow disk slows the
worker down instead of piling up finished images in memory. Jobs handed over stay `running`, and
in the heartbeat, until they are finished, so the reconciler never takes them away.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from gpu_worker.connections import replace_broken_connections

log = logging.getLogger(__name__)


class Finisher:
    def __init__(self, depth: int = 2) -> None:
        self._queue: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue(depth)
        self._thread = threading.Thread(target=self._run, name="finisher", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[..., Any], *args: Any) -> None:
        self._queue.put((work, args))

    def drain(self) -> None:
        """Wait until everything handed over is finished."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                work, args = item
                work(*args)
            except Exception:
                log.exception("finishing a batch failed; the reconciler will re-run its jobs")
            finally:
                replace_broken_connections()
                self._queue.task_done()

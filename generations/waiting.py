"""Waiting for a generation to finish, for `Prefer: wait=N` and the OpenAI-style endpoints."""

from __future__ import annotations

import re
import time
from typing import Any

from django.db import close_old_connections

from generations.models import TERMINAL_STATUSES, Generation

MAX_WAIT_SECONDS = 60
_PREFER_WAIT = re.compile(r"(?:^|[;,\s])wait=(\d+)", re.IGNORECASE)


def preferred_wait(header: str) -> int | None:
    """Seconds asked for by ``Prefer: wait=N`` (capped at 60), or None."""
    match = _PREFER_WAIT.search(header or "")
    if not match:
        return None
    return min(int(match.group(1)), MAX_WAIT_SECONDS)


def wait_for_terminal(generation_id: Any, timeout: float, interval: float = 0.1) -> Generation | None:
    """The generation once it reached a terminal state, or None if ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    while True:
        generation = Generation.objects.filter(pk=generation_id).first()
        if generation is not None and generation.status in TERMINAL_STATUSES:
            return generation
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
        close_old_connections()

"""Staff operations on generations from the admin: retrying dead letters, reordering a lane.

Both are transitions of `generations.lifecycle`; these are the names the admin calls.
"""

from __future__ import annotations

from generations import lifecycle
from generations.models import Generation


def retry_failed_generation(*, generation: Generation) -> bool:
    """Put a failed generation back in line as pending, its credits held again, and let the user's
    cap decide when it enters RQ. False when it is not failed (any more).

    Raises ``InsufficientCredits``, changing nothing, when the owner cannot cover it again.
    """
    return lifecycle.retry_failed(generation)


def move_generation_to_front(*, generation: Generation) -> bool:
    """Make a queued generation the next job of its lane. False when it is not queued."""
    return lifecycle.move_to_front(generation)

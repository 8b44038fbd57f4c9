"""Checks every submission passes, whichever door it came through (browser, API, OpenAI-style)."""

from __future__ import annotations

import re
import time

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from accounts.models import User
from core import sql
from core.errors import ApiError
from gallery.models import BlockedTerm, Profile


def profile_for(user: User) -> Profile:
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


def is_suspended(user: User) -> bool:
    # Every submission asks: one plain statement instead of an ORM query (see core/sql.py).
    statement = f"SELECT 1 FROM {sql.table(Profile)} WHERE user_id = %s AND suspended"  # noqa: S608
    found = sql.fetch_one(statement, [user.pk])
    return found is not None


# Staff edit the blocklist rarely and every submission reads it: each process keeps it for a few
# seconds, so an edit takes effect everywhere within BLOCKLIST_SECONDS.
BLOCKLIST_SECONDS = 5.0
_blocklist: tuple[float, list[tuple[str, re.Pattern[str]]]] = (0.0, [])


def active_blocklist() -> list[tuple[str, re.Pattern[str]]]:
    global _blocklist
    loaded_at, terms = _blocklist
    if time.monotonic() - loaded_at > BLOCKLIST_SECONDS:
        terms = [(term.term, term.pattern()) for term in BlockedTerm.objects.filter(active=True)]
        _blocklist = (time.monotonic(), terms)
    return terms


@receiver([post_save, post_delete], sender=BlockedTerm)
def forget_blocklist(**kwargs: object) -> None:
    """An edit here is seen at once by this process (others reload within BLOCKLIST_SECONDS)."""
    global _blocklist
    _blocklist = (0.0, [])


def blocked_term_in(text: str) -> str | None:
    for term, pattern in active_blocklist():
        if pattern.search(text):
            return term
    return None


def check_submission(*, user: User, prompt: str, negative_prompt: str = "") -> None:
    """Raise the API error that stops this submission, if any: suspension, then the blocklist."""
    if is_suspended(user):
        raise ApiError("account_suspended")
    term = blocked_term_in(prompt)
    if term is not None:
        message = f"The prompt contains a blocked term ({term!r})."
        raise ApiError("prompt_blocked", message, {"prompt": [message]})


def suspend_user(*, user: User, reason: str = "") -> Profile:
    profile = profile_for(user)
    profile.suspended, profile.suspended_reason, profile.suspended_at = True, reason, timezone.now()
    profile.save(update_fields=["suspended", "suspended_reason", "suspended_at"])
    return profile

"""Checks every submission passes, whichever door it came through (browser, API, OpenAI-style)."""

from __future__ import annotations

from django.utils import timezone

from accounts.models import User
from gallery.models import BlockedTerm, Profile
from generations.errors import ApiError


def profile_for(user: User) -> Profile:
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


def is_suspended(user: User) -> bool:
    return Profile.objects.filter(user=user, suspended=True).exists()


def blocked_term_in(text: str) -> str | None:
    for term in BlockedTerm.objects.filter(active=True):
        if term.pattern().search(text):
            return term.term
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

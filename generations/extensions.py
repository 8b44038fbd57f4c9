"""What generations asks of the apps above it, registered in settings as Django registers
``AUTH_PASSWORD_VALIDATORS``, so that generations imports none of them (docs/architecture.md).

- ``ATELIER_SUBMISSION_CHECKS``: dotted paths of callables ``check(*, user, prompt,
  negative_prompt)`` that raise an ``ApiError`` to stop a submission (moderation).
- ``ATELIER_STYLE_PRESETS``: the dotted path of a callable returning the active style presets
  (objects with ``slug``, ``name`` and ``apply(prompt, negative_prompt)``), or "" for none.
- ``ATELIER_ACCOUNT_PURGE_STEPS``: dotted paths of callables ``forget(*, user)`` that remove what
  an app above keeps of a member whose closed account is purged (the gallery's likes, reports).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from accounts.models import User


class SubmissionCheck(Protocol):
    def __call__(self, *, user: User, prompt: str, negative_prompt: str = "") -> None: ...


class StylePreset(Protocol):
    slug: str
    name: str

    def apply(self, prompt: str, negative_prompt: str) -> tuple[str, str]: ...


@lru_cache(maxsize=8)
def _load(paths: tuple[str, ...]) -> list[Any]:
    # Keyed by the paths themselves, so an overridden setting (tests) loads its own callables.
    return [import_string(path) for path in paths]


def submission_checks() -> list[SubmissionCheck]:
    paths: Sequence[str] = settings.ATELIER_SUBMISSION_CHECKS
    return _load(tuple(paths))


def check_submission(*, user: User, prompt: str, negative_prompt: str = "") -> None:
    """Run every registered check; the first that objects raises its ApiError."""
    for check in submission_checks():
        check(user=user, prompt=prompt, negative_prompt=negative_prompt)


def style_presets() -> list[StylePreset]:
    path: str = settings.ATELIER_STYLE_PRESETS
    if not path:
        return []
    (provider,) = _load((path,))
    presets: Callable[[], list[StylePreset]] = provider
    return presets()


def style_preset(slug: str) -> StylePreset | None:
    return next((preset for preset in style_presets() if preset.slug == slug), None)


class PurgeStep(Protocol):
    def __call__(self, *, user: User) -> None: ...


def purge_steps() -> list[PurgeStep]:
    """``ATELIER_ACCOUNT_PURGE_STEPS``: what the apps above forget of a purged member
    (generations/leaving.py), run in the purge's transaction before its generations go."""
    paths: Sequence[str] = settings.ATELIER_ACCOUNT_PURGE_STEPS
    return _load(tuple(paths))

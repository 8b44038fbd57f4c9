"""Leaving Atelier: closing an account and taking one's data along (generations/leaving.py,
generations/exports.py); config/settings.py takes every name from here."""

from __future__ import annotations

from core.env import env_int

# Days between closing an account (deactivated at once) and the dispatcher removing its images,
# uploads, keys, webhooks and personal data; within them the mailed link restores the account.
ATELIER_ACCOUNT_DELETION_GRACE_DAYS = env_int("ATELIER_ACCOUNT_DELETION_GRACE_DAYS", 7)
# Days a finished data export (a zip of the member's images and generations) can be downloaded.
ATELIER_DATA_EXPORT_DAYS = env_int("ATELIER_DATA_EXPORT_DAYS", 7)
# What the apps above generations forget of a member when a closed account is purged: dotted
# paths of callables ``forget(*, user)`` (generations/extensions.py), as the submission checks.
ATELIER_ACCOUNT_PURGE_STEPS = ["gallery.services.forget_member"]

from __future__ import annotations

from functools import cache

from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, User, hash_secret, new_key_parts
from config import sql


@transaction.atomic
def api_key_create(*, user: User, name: str = "") -> tuple[ApiKey, str]:
    """Create a key and return it with its full text, which is never stored and never shown again."""
    prefix, secret = new_key_parts()
    key = ApiKey.objects.create(user=user, name=name[:100], prefix=prefix, secret_hash=hash_secret(secret))
    return key, f"{prefix}.{secret}"


def api_key_revoke(*, user: User, key_id: int) -> bool:
    changed = ApiKey.objects.filter(pk=key_id, user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    return changed == 1


@cache
def active_key_sql() -> str:
    keys, users = sql.table(ApiKey), sql.table(User)
    return (
        f"SELECT {sql.columns(ApiKey)}, {sql.columns(User)} FROM {keys} "  # noqa: S608 (names from the models)
        f"JOIN {users} ON {users}.id = {keys}.user_id WHERE {keys}.prefix = %s AND {keys}.revoked_at IS NULL"
    )


def api_key_user(raw_key: str) -> User | None:
    """The active user owning ``raw_key``, or None for a malformed, unknown or revoked key."""
    prefix, sep, secret = raw_key.strip().partition(".")
    if not sep or not prefix or not secret:
        return None
    # Every API request runs this: SQL rather than the ORM (config/sql.py says why).
    row = sql.fetch_one(active_key_sql(), [prefix])
    if row is None:
        return None
    key = sql.instance(ApiKey, row[: sql.width(ApiKey)])
    user = sql.instance(User, row[sql.width(ApiKey) :])
    if not key.matches(secret) or not user.is_active:
        return None
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return user

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from accounts.models import ApiKey, User, hash_secret, new_key_parts
from accounts.scopes import ALL_SCOPES, SCOPES, parse_scopes
from core import sql


@transaction.atomic
def api_key_create(*, user: User, name: str = "", scopes: Iterable[str] = ALL_SCOPES) -> tuple[ApiKey, str]:
    """Create a key and return it with its full text, which is never stored and never shown again.
    The key may do what its ``scopes`` allow (default: everything)."""
    chosen = [scope for scope in SCOPES if scope in set(scopes)]
    if not chosen:
        raise ValueError("an API key needs at least one scope")
    prefix, secret = new_key_parts()
    key = ApiKey.objects.create(
        user=user, name=name[:100], prefix=prefix, secret_hash=hash_secret(secret), scopes=" ".join(chosen)
    )
    return key, f"{prefix}.{secret}"


def api_key_revoke(*, user: User, key_id: int) -> bool:
    changed = ApiKey.objects.filter(pk=key_id, user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    return changed == 1


@cache
def owned_row_sql(model: type[Model], selected: str, where: str, also: str = "", joins: str = "") -> str:
    """``selected`` columns of ``model``'s table, then its user's and ``also``, in one query."""
    table, users = sql.table(model), sql.table(User)
    return (
        f"SELECT {selected}, {sql.columns(User)}{also} FROM {table} "  # noqa: S608 (names from the models)
        f"JOIN {users} ON {users}.id = {table}.user_id{joins} WHERE {where}"
    )


def active_key_sql(also: str = "", joins: str = "") -> str:
    keys = sql.table(ApiKey)
    where = f"{keys}.prefix = %s AND {keys}.revoked_at IS NULL"
    return owned_row_sql(ApiKey, sql.columns(ApiKey), where, also, joins)


def api_key_owner(
    raw_key: str, *, also: str = "", joins: str = ""
) -> tuple[User, frozenset[str], tuple[Any, ...]] | None:
    """The active user owning ``raw_key`` and the key's scopes, or None for a malformed, unknown or
    revoked key; with the values of the columns ``also`` that the caller joined in (``joins``)
    in the same query."""
    prefix, sep, secret = raw_key.strip().partition(".")
    if not sep or not prefix or not secret:
        return None
    # Every API request runs this: SQL rather than the ORM (core/sql.py says why).
    row = sql.fetch_one(active_key_sql(also, joins), [prefix])
    if row is None:
        return None
    key_end, user_end = sql.width(ApiKey), sql.width(ApiKey) + sql.width(User)
    key = sql.instance(ApiKey, row[:key_end])
    user = sql.instance(User, row[key_end:user_end])
    if not key.matches(secret) or not user.is_active:
        return None
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return user, parse_scopes(key.scopes), row[user_end:]


def api_key_user(raw_key: str) -> User | None:
    """The active user owning ``raw_key``, or None for a malformed, unknown or revoked key."""
    owner = api_key_owner(raw_key)
    return owner[0] if owner else None

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, User, hash_secret, new_key_parts


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


def api_key_user(raw_key: str) -> User | None:
    """The active user owning ``raw_key``, or None for a malformed, unknown or revoked key."""
    prefix, sep, secret = raw_key.strip().partition(".")
    if not sep or not prefix or not secret:
        return None
    key = ApiKey.objects.select_related("user").filter(prefix=prefix, revoked_at__isnull=True).first()
    if key is None or not key.matches(secret) or not key.user.is_active:
        return None
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key.user

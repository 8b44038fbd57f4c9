from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone

from accounts.scopes import ALL_SCOPES_TEXT


class User(AbstractUser):
    """Our own user model from the first migration, so that it can grow without a data migration."""


def hash_secret(secret: str) -> str:
    # Secrets are 32 random bytes, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKey(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Space-separated, as OAuth writes scopes (accounts/scopes.py); keys made before scopes existed
    # got every scope, so they kept working.
    scopes = models.CharField(max_length=200, default=ALL_SCOPES_TEXT)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix} ({self.user})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.secret_hash, hash_secret(secret))


def new_key_parts() -> tuple[str, str]:
    return "atl_" + secrets.token_hex(6), secrets.token_urlsafe(32)


class AccountClosure(models.Model):
    """A member who closed their account: deactivated at once, purged (images, uploads, keys,
    webhooks and personal data removed; the user row kept as an anonymous placeholder so that the
    credit ledger stays whole) once ``purge_after`` has passed (generations/leaving.py)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="closure")
    requested_at = models.DateTimeField(default=timezone.now)
    purge_after = models.DateTimeField(db_index=True)
    purged_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"closure of {self.user_id}"


class ExportStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"
    EXPIRED = "expired"


class DataExport(models.Model):
    """A member's data taken along: a zip of their images and a JSON of their generations, made in
    the background (generations/exports.py) and downloadable by its owner until ``expires_at``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="data_exports")
    status = models.CharField(max_length=16, choices=ExportStatus.choices, default=ExportStatus.PENDING)
    # Where the member asked for it (scheme and host), so the mail's link leads back there.
    site = models.CharField(max_length=200)
    file = models.CharField(max_length=255, blank=True)
    size = models.BigIntegerField(default=0)
    requested_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"export {self.id} {self.status}"

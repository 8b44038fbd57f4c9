from __future__ import annotations

import hashlib
import hmac
import secrets

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

"""What an ID token and /o/userinfo/ say about a member (OpenID Connect's standard claims, each
given only with its scope: ``profile`` for the username, ``email`` for the address)."""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from oauth2_provider.oauth2_validators import OAuth2Validator


class AtelierValidator(OAuth2Validator):
    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        user = request.user
        verified = EmailAddress.objects.filter(user=user, email__iexact=user.email, verified=True)
        return {
            "preferred_username": user.username,
            "email": user.email,
            "email_verified": verified.exists(),
        }

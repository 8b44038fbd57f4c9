from __future__ import annotations

from allauth.account.models import EmailAddress


def has_verified_email(*, user_id: int) -> bool:
    return bool(EmailAddress.objects.filter(user_id=user_id, verified=True).exists())

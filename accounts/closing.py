"""Closing an account, the accounts layer's part: the member's sign-in, keys and tokens stop at
once (a deactivated user); the mailed restore link undoes that within the grace period; the purge
erases who they were, keeping the row as an anonymous placeholder that the credit ledger still
points at (generations/leaving.py runs the whole of it)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount
from django.core import signing
from oauth2_provider.models import AccessToken, Application, Grant, IDToken, RefreshToken

from accounts.models import AccountClosure, ApiKey, DataExport, User

RESTORE_SALT = "atelier.account-restore"


def account_deactivate(*, user: User) -> None:
    """Sign-in, API keys, OAuth tokens and sessions stop working: each of them asks is_active."""
    User.objects.filter(pk=user.pk).update(is_active=False)
    user.is_active = False


def account_reactivate(*, user: User) -> None:
    User.objects.filter(pk=user.pk).update(is_active=True)
    user.is_active = True


def restore_token(closure: AccountClosure) -> str:
    """What the confirmation mail's restore link carries: signed, naming this closure only."""
    return signing.dumps({"user": closure.user_id, "at": closure.requested_at.isoformat()}, salt=RESTORE_SALT)


def closure_for_token(token: str, *, max_age: timedelta) -> AccountClosure | None:
    """The unpurged closure a restore link names, while the link is young enough; else None."""
    try:
        data = signing.loads(token, salt=RESTORE_SALT, max_age=max_age)
    except signing.BadSignature:
        return None
    closure = AccountClosure.objects.filter(user_id=data.get("user"), purged_at__isnull=True).first()
    if closure is None or closure.requested_at.isoformat() != data.get("at"):
        return None  # a link of an earlier closure, since restored
    return closure


def identity_erase(*, user: User) -> None:
    """Everything that says who the member was or lets anyone act as them: keys, third-party
    apps' tokens and the apps they registered, addresses, social sign-ins, second factors, data
    exports' rows; the user row keeps only a meaningless name and can never sign in."""
    ApiKey.objects.filter(user=user).delete()
    for model in (RefreshToken, AccessToken, IDToken, Grant):
        model.objects.filter(user=user).delete()
    Application.objects.filter(user=user).delete()
    EmailAddress.objects.filter(user=user).delete()
    SocialAccount.objects.filter(user=user).delete()
    Authenticator.objects.filter(user=user).delete()
    DataExport.objects.filter(user=user).delete()
    user.username = f"deleted-{secrets.token_hex(8)}"
    user.email = user.first_name = user.last_name = ""
    user.set_unusable_password()
    user.is_active = user.is_staff = user.is_superuser = False
    user.last_login = None
    user.save()
    user.groups.clear()
    user.user_permissions.clear()

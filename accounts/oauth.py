"""Third-party apps acting for a member with OAuth access tokens (django-oauth-toolkit's models):
who a token speaks for, which apps a member has authorized, and taking an app's access away."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, Grant, RefreshToken

from accounts.models import User
from accounts.scopes import SCOPES, parse_scopes
from accounts.services import owned_row_sql
from core import sql


def active_token_sql(also: str = "", joins: str = "") -> str:
    tokens = sql.table(AccessToken)
    where = f"{tokens}.token_checksum = %s AND {tokens}.expires > %s"
    return owned_row_sql(AccessToken, f"{tokens}.id, {tokens}.scope", where, also, joins)


def access_token_owner(
    raw_token: str, *, also: str = "", joins: str = ""
) -> tuple[int, User, frozenset[str], tuple[Any, ...]] | None:
    """The token's id, its active member and the scopes granted, for an unexpired and unrevoked
    access token, else None; with the values of the columns ``also`` joined in (``joins``), as
    ``api_key_owner`` does. Tokens are kept as SHA-256 checksums only."""
    checksum = hashlib.sha256(raw_token.encode()).hexdigest()
    # Every request of a third-party app runs this: SQL rather than the ORM (core/sql.py).
    now = connection.ops.adapt_datetimefield_value(timezone.now())  # as the column stores it
    row = sql.fetch_one(active_token_sql(also, joins), [checksum, now])
    if row is None:
        return None
    user_end = 2 + sql.width(User)
    user = sql.instance(User, row[2:user_end])
    if not user.is_active:
        return None
    return int(row[0]), user, parse_scopes(row[1]), row[user_end:]


@dataclass(frozen=True)
class AuthorizedApp:
    application: Application
    scopes: list[str]  # what the member granted, in the catalogue's order, as sentences
    authorized_at: datetime


def authorized_apps(*, user: User) -> list[AuthorizedApp]:
    """The apps that can act for ``user`` now (an unexpired access token or a live refresh token),
    newest grant first."""
    now = timezone.now()
    found: dict[int, AuthorizedApp] = {}
    live = AccessToken.objects.filter(user=user, expires__gt=now, application__isnull=False)
    refreshable = RefreshToken.objects.filter(user=user, revoked__isnull=True, access_token__isnull=False)
    tokens = list(live.select_related("application")) + [
        r.access_token for r in refreshable.select_related("access_token__application") if r.access_token
    ]
    for token in sorted(tokens, key=lambda t: t.created):
        app = token.application
        assert app is not None
        granted = parse_scopes(token.scope)
        scopes = [sentence for name, sentence in SCOPES.items() if name in granted]
        found[app.pk] = AuthorizedApp(application=app, scopes=scopes, authorized_at=token.created)
    return sorted(found.values(), key=lambda a: a.authorized_at, reverse=True)


@transaction.atomic
def app_access_revoke(*, user: User, application_id: int) -> bool:
    """Take every token and pending code of one app for ``user`` away: its next call is a 401.
    False when the member had not authorized that app."""
    refresh = RefreshToken.objects.filter(user=user, application_id=application_id, revoked__isnull=True)
    had_refresh = False
    for token in refresh:
        token.revoke()  # revokes its access token too
        had_refresh = True
    deleted, _ = AccessToken.objects.filter(user=user, application_id=application_id).delete()
    Grant.objects.filter(user=user, application_id=application_id).delete()
    return had_refresh or deleted > 0

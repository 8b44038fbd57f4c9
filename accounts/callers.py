"""The user behind a request, as the authentication classes found them (a session or an API
key): typed for the views of every app."""

from __future__ import annotations

from django.http import HttpRequest
from rest_framework.request import Request

from accounts.models import User


def current_user(request: Request | HttpRequest) -> User:
    """The signed-in caller of a view that requires one."""
    assert isinstance(request.user, User)
    return request.user


def viewer(request: Request | HttpRequest) -> User | None:
    """The caller when signed in, else None (public views)."""
    user = request.user
    return user if isinstance(user, User) and user.is_authenticated else None

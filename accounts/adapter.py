"""How allauth fits Atelier: it counts clients by the address core.client finds behind our
trusted proxies, as every other limit does, and sign-ups through a provider like the form's."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.http import HttpRequest

from accounts.throttle import claim_signup
from core.client import client_ip


class AccountAdapter(DefaultAccountAdapter):
    def get_client_ip(self, request: HttpRequest) -> str:
        return client_ip(request)


class SocialAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest, sociallogin: Any) -> bool:
        """An account made through GitHub, Google or another provider counts against the client
        address's sign-ups of the hour, as the sign-up form's do (free credits come with each)."""
        return claim_signup(request)

"""Staff can refund, suspend and read everyone's work: with ATELIER_STAFF_MFA on (the production
default) they reach the admin only once an authenticator app guards their sign-in, and the
admin's own password-only sign-in form is replaced by ours, which asks for the code."""

from __future__ import annotations

from collections.abc import Callable

from allauth.mfa.models import Authenticator
from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse


class StaffTwoFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if settings.ATELIER_STAFF_MFA and needs_two_factors(request):
            messages.warning(
                request, "Staff pages need two-factor sign-in: set up an authenticator app first."
            )
            return HttpResponseRedirect(reverse("mfa_activate_totp"))
        return self.get_response(request)


def needs_two_factors(request: HttpRequest) -> bool:
    user = request.user
    if not request.path.startswith(reverse("admin:index")) or not user.is_authenticated or not user.is_staff:
        return False
    return not is_mfa_enabled(user, [Authenticator.Type.TOTP])

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.callers import current_user
from accounts.models import User
from accounts.oauth import app_access_revoke, authorized_apps
from accounts.scopes import SCOPES
from accounts.services import api_key_create, api_key_revoke


@login_required
def api_keys(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)
    new_key = None
    if request.method == "POST":
        # The page's form always says which scopes it offered; a bare POST gets every scope.
        offered = "scopes_offered" in request.POST
        chosen = request.POST.getlist("scopes") if offered else list(SCOPES)
        if not chosen or not set(chosen) <= set(SCOPES):
            messages.error(request, "Choose at least one of the scopes listed for the key.")
        else:
            _, new_key = api_key_create(user=request.user, name=request.POST.get("name", ""), scopes=chosen)
    keys = request.user.api_keys.all()
    return render(request, "accounts/api_keys.html", {"keys": keys, "new_key": new_key, "scopes": SCOPES})


@login_required
@require_POST
def api_key_revoke_view(request: HttpRequest, key_id: int) -> HttpResponse:
    assert isinstance(request.user, User)
    if api_key_revoke(user=request.user, key_id=key_id):
        messages.success(request, "The key was revoked.")
    return redirect("api_keys")


@login_required
def authorized_apps_view(request: HttpRequest) -> HttpResponse:
    """The third-party apps acting for the member (OAuth), each with a button to revoke it."""
    if request.method == "POST":
        chosen = request.POST.get("application", "")
        if chosen.isdigit() and app_access_revoke(user=current_user(request), application_id=int(chosen)):
            messages.success(request, "The app's access was revoked: it can no longer act for you.")
        else:
            messages.error(request, "That app has no access to revoke.")
        return redirect("authorized_apps")
    return render(
        request, "accounts/authorized_apps.html", {"apps": authorized_apps(user=current_user(request))}
    )

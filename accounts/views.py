from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.models import User
from accounts.services import api_key_create, api_key_revoke


@login_required
def api_keys(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)
    new_key = None
    if request.method == "POST":
        _, new_key = api_key_create(user=request.user, name=request.POST.get("name", ""))
    keys = request.user.api_keys.all()
    return render(request, "accounts/api_keys.html", {"keys": keys, "new_key": new_key})


@login_required
@require_POST
def api_key_revoke_view(request: HttpRequest, key_id: int) -> HttpResponse:
    assert isinstance(request.user, User)
    if api_key_revoke(user=request.user, key_id=key_id):
        messages.success(request, "The key was revoked.")
    return redirect("api_keys")

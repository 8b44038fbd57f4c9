"""Account settings' "Download my data" and "Delete my account" pages, and the restore link
(generations/leaving.py and exports.py do the work)."""

from __future__ import annotations

import uuid
from typing import Any

from allauth.account.decorators import reauthentication_required
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.callers import current_user
from accounts.models import ExportStatus
from billing.leaving import StripeError
from generations.exports import data_export_request, export_for_download
from generations.leaving import account_close, account_restore


def site_of(request: HttpRequest) -> str:
    return f"{request.scheme}://{request.get_host()}"


@login_required
@reauthentication_required(allow_get=True)  # the POST asks for the password (or a second factor) again
def account_delete(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    context: dict[str, Any] = {"grace_days": settings.ATELIER_ACCOUNT_DELETION_GRACE_DAYS}
    if request.method != "POST":
        return render(request, "leaving/delete.html", context)
    if request.POST.get("confirm", "").strip() != user.username:
        context["error"] = "Type your username exactly to confirm."
        return render(request, "leaving/delete.html", context, status=400)
    try:
        closure = account_close(user=user, site=site_of(request))
    except StripeError:
        context["error"] = (
            "Your subscription could not be canceled just now, so nothing was changed. Try again in a minute."
        )
        return render(request, "leaving/delete.html", context, status=503)
    logout(request)
    return render(request, "leaving/closed.html", {"closure": closure, "email": user.email})


def account_restore_view(request: HttpRequest, token: str) -> HttpResponse:
    """The confirmation mail's link: a page with a button (a GET changes nothing, so that a mail
    scanner following links cannot restore an account)."""
    if request.method != "POST":
        return render(request, "leaving/restore.html", {"token": token})
    user = account_restore(token=token)
    if user is None:
        return render(request, "leaving/restore.html", {"token": token, "invalid": True}, status=400)
    messages.success(request, "Your account is open again. Sign in as before.")
    return redirect("login")


@login_required
def data_export(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    if request.method == "POST":
        _, new = data_export_request(user=user, site=site_of(request))
        if new:
            messages.success(request, "Your export is being prepared. We will email you a link when ready.")
        else:
            messages.info(request, "An export is already being prepared.")
        return redirect("data_export")
    exports = user.data_exports.exclude(status=ExportStatus.EXPIRED)[:10]
    return render(
        request, "leaving/export.html", {"exports": exports, "days": settings.ATELIER_DATA_EXPORT_DAYS}
    )


@login_required
def data_export_download(request: HttpRequest, export_id: uuid.UUID) -> FileResponse:
    """Only the owner, only while it is ready and unexpired: anyone else gets the 404 of a
    missing one."""
    export = export_for_download(user=current_user(request), export_id=export_id)
    if export is None:
        raise Http404("No such export.")
    handle = default_storage.open(export.file, "rb")
    name = f"atelier-{export.user.username}-{export.id.hex[:8]}.zip"
    response = FileResponse(handle, as_attachment=True, filename=name, content_type="application/zip")
    response["Cache-Control"] = "private, no-store"
    return response

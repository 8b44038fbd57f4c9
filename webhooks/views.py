"""The account page for webhooks: register, pause, test, and read the delivery log."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.models import User
from core.events import EVENT_TYPES
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import create_endpoint, send_test_event
from webhooks.targets import UnsafeUrl

PAGE_DELIVERIES = 20  # per endpoint; the API pages through all of them


@login_required
def webhooks_page(request: HttpRequest) -> HttpResponse:
    new_secret = None
    if request.method == "POST":
        events = [e for e in request.POST.getlist("events") if e in EVENT_TYPES]
        try:
            endpoint = create_endpoint(user=request.user, url=request.POST.get("url", ""), events=events)
            new_secret = endpoint.secret
        except UnsafeUrl as exc:
            messages.error(request, f"That URL cannot receive webhooks: {exc}")
    assert isinstance(request.user, User)
    mine = WebhookEndpoint.objects.filter(user=request.user)
    # The latest deliveries of each endpoint only (a window per endpoint), with their attempts.
    latest = WebhookDelivery.objects.prefetch_related("attempt_log").order_by("-created_at")
    endpoints = mine.prefetch_related(
        Prefetch("deliveries", queryset=latest[:PAGE_DELIVERIES], to_attr="latest_deliveries")
    )
    context = {"endpoints": endpoints, "event_types": EVENT_TYPES, "new_secret": new_secret}
    return render(request, "webhooks/webhooks.html", context)


@login_required
@require_POST
def toggle(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id, user=request.user)
    endpoint.enabled = not endpoint.enabled
    endpoint.save(update_fields=["enabled"])
    return redirect("webhooks_page")


@login_required
@require_POST
def test_event(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id, user=request.user)
    send_test_event(endpoint)
    messages.success(request, "A test event is on its way.")
    return redirect("webhooks_page")

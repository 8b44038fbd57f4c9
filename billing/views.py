from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.models import User
from billing import stripe_gateway
from billing.credits import account_for, effective_plan, grant_waits_for_email
from billing.models import Plan
from billing.selectors import current_period_entries
from billing.webhooks import process_event
from core.errors import error_body


def pricing(request: HttpRequest) -> HttpResponse:
    plans = Plan.objects.all()
    current = None
    if request.user.is_authenticated:
        assert isinstance(request.user, User)
        current = account_for(request.user).plan
    return render(
        request,
        "billing/pricing.html",
        {"plans": plans, "current": current, "billing_enabled": settings.BILLING_ENABLED},
    )


@login_required
def billing(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)
    account = account_for(request.user)
    context = {
        "account": account,
        "plan": effective_plan(account),
        "entries": current_period_entries(account),
        "billing_enabled": settings.BILLING_ENABLED,
        "grant_waits_for_email": grant_waits_for_email(account),
    }
    return render(request, "billing/billing.html", context)


@login_required
@require_POST
def checkout(request: HttpRequest, slug: str) -> HttpResponse:
    assert isinstance(request.user, User)
    plan = get_object_or_404(Plan, slug=slug)
    if not settings.BILLING_ENABLED or not plan.stripe_price_id:
        messages.error(request, "Billing is not configured on this server.")
        return redirect("pricing")
    url = stripe_gateway.checkout_session(
        account=account_for(request.user),
        user=request.user,
        plan=plan,
        success_url=request.build_absolute_uri(reverse("billing") + "?checkout=success"),
        cancel_url=request.build_absolute_uri(reverse("pricing")),
    )
    return redirect(url)


@login_required
@require_POST
def portal(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)
    if not settings.BILLING_ENABLED:
        messages.error(request, "Billing is not configured on this server.")
        return redirect("billing")
    url = stripe_gateway.portal_session(
        account=account_for(request.user),
        user=request.user,
        return_url=request.build_absolute_uri(reverse("billing")),
    )
    return redirect(url)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    if not settings.BILLING_ENABLED:
        return JsonResponse(error_body("billing_disabled"), status=503)
    signature = request.headers.get("Stripe-Signature", "")
    try:
        event = stripe_gateway.verify_event(request.body, signature)
    except (stripe_gateway.SignatureError, ValueError):
        return JsonResponse(error_body("invalid_signature"), status=400)
    processed = process_event(event)
    return JsonResponse({"received": True, "duplicate": not processed})

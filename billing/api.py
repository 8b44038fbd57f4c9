"""``GET /api/v1/billing``: the caller's plan and credits (scope ``billing:read`` for keys and
third-party apps)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.callers import current_user
from billing.credits import account_for, effective_plan, format_credits
from core.openapi import errors

BillingOut: Any = inline_serializer(
    "Billing",
    {
        "plan": serializers.CharField(),
        "plan_name": serializers.CharField(),
        "lane": serializers.CharField(),
        "balance": serializers.CharField(help_text="Available credits, e.g. 25.00."),
        "held": serializers.CharField(help_text="Credits held by generations in progress."),
        "subscription_status": serializers.CharField(),
        "current_period_end": serializers.DateTimeField(allow_null=True),
    },
)


class BillingApi(APIView):
    @extend_schema(responses={200: BillingOut, **errors(401, 403)})
    def get(self, request: Request) -> Response:
        account = account_for(current_user(request))
        plan = effective_plan(account)
        return Response(
            {
                "plan": plan.slug,
                "plan_name": plan.name,
                "lane": plan.lane,
                "balance": format_credits(account.balance),
                "held": format_credits(account.held),
                "subscription_status": account.subscription_status,
                "current_period_end": account.current_period_end,
            }
        )

from django.contrib import admin

from billing.models import BillingAccount, CreditEntry, Plan, StripeEvent


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin[Plan]):
    list_display = [
        "name",
        "slug",
        "rank",
        "price_cents",
        "monthly_credits",
        "lane",
        "relax_allowed",
        "private_allowed",
        "max_concurrent",
        "max_pending",
        "api_rate_per_minute",
        "stripe_price_id",
    ]


class CreditEntryInline(admin.TabularInline[CreditEntry, BillingAccount]):
    model = CreditEntry
    extra = 0
    can_delete = False
    readonly_fields = ["kind", "amount", "credits", "generation", "reference", "note", "created_at"]


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin[BillingAccount]):
    list_display = [
        "user",
        "plan",
        "scheduled_plan",
        "subscription_status",
        "balance",
        "held",
        "current_period_end",
    ]
    list_filter = ["plan", "subscription_status"]
    search_fields = ["user__username", "stripe_customer_id", "stripe_subscription_id"]
    readonly_fields = ["balance", "held"]
    inlines = [CreditEntryInline]


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin[StripeEvent]):
    list_display = ["event_id", "type", "received_at"]
    search_fields = ["event_id", "type"]

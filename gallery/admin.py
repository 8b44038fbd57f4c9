"""Staff moderation: the report queue, hiding images, suspending members, presets, the blocklist."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from gallery.models import BlockedTerm, Profile, Report, ReportStatus, StylePreset
from gallery.moderation import suspend_user
from generations.models import Image
from generations.storage import sync_visibility


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin[Report]):
    list_display = ["id", "image", "reason", "status", "reporter", "created_at"]
    list_filter = ["status", "reason"]
    search_fields = ["image__id", "reporter__username", "details"]
    readonly_fields = ["reporter", "image", "reason", "details", "created_at", "resolved_at", "resolved_by"]
    actions = ["hide_images", "suspend_owners", "dismiss"]

    def resolve(self, request: HttpRequest, queryset: QuerySet[Report], status: str) -> int:
        return queryset.update(status=status, resolved_at=timezone.now(), resolved_by=request.user)

    @admin.action(description="Hide the reported images from Explore")
    def hide_images(self, request: HttpRequest, queryset: QuerySet[Report]) -> None:
        images = list(Image.objects.filter(pk__in=queryset.values("image_id")))  # listed before the update
        hidden = Image.objects.filter(pk__in=[image.pk for image in images]).update(hidden=True)
        sync_visibility(images)
        self.resolve(request, queryset, ReportStatus.ACTIONED)
        self.message_user(request, f"Hid {hidden} image(s).", messages.SUCCESS)

    @admin.action(description="Suspend the owners of the reported images")
    def suspend_owners(self, request: HttpRequest, queryset: QuerySet[Report]) -> None:
        owners = {
            report.image.generation.user for report in queryset.select_related("image__generation__user")
        }
        for owner in owners:
            suspend_user(user=owner, reason="Suspended from the report queue.")
        self.resolve(request, queryset, ReportStatus.ACTIONED)
        self.message_user(request, f"Suspended {len(owners)} member(s).", messages.SUCCESS)

    @admin.action(description="Dismiss the reports")
    def dismiss(self, request: HttpRequest, queryset: QuerySet[Report]) -> None:
        count = self.resolve(request, queryset, ReportStatus.DISMISSED)
        self.message_user(request, f"Dismissed {count} report(s).", messages.SUCCESS)


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin[Profile]):
    list_display = ["user", "suspended", "suspended_at", "show_mature"]
    list_filter = ["suspended", "show_mature"]
    search_fields = ["user__username", "user__email"]
    actions = ["suspend", "reinstate"]

    @admin.action(description="Suspend (cannot submit)")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Profile]) -> None:
        for profile in queryset.select_related("user"):
            suspend_user(user=profile.user, reason=f"Suspended by {request.user}.")

    @admin.action(description="Reinstate")
    def reinstate(self, request: HttpRequest, queryset: QuerySet[Profile]) -> None:
        queryset.update(suspended=False, suspended_reason="", suspended_at=None)


@admin.register(StylePreset)
class StylePresetAdmin(admin.ModelAdmin[StylePreset]):
    list_display = ["name", "slug", "prompt_template", "position", "active"]
    list_editable = ["position", "active"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(BlockedTerm)
class BlockedTermAdmin(admin.ModelAdmin[BlockedTerm]):
    list_display = ["term", "active", "note", "created_at"]
    list_editable = ["active"]
    search_fields = ["term"]

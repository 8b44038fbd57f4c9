from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from billing.credits import InsufficientCredits
from generations.models import ContentRating, Generation, Image, Upload
from generations.operations import move_generation_to_front, retry_failed_generation
from generations.storage import sync_visibility


class ImageInline(admin.TabularInline[Image, Generation]):
    model = Image
    extra = 0
    readonly_fields = ["id", "index", "seed", "width", "height", "original", "thumbnail", "sha256"]
    can_delete = False


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin[Generation]):
    list_display = [
        "id",
        "user",
        "status",
        "kind",
        "model_name",
        "lane",
        "error_code",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "kind", "model_name", "lane", "error_code"]
    search_fields = ["id", "prompt", "user__username"]
    # Status changes go through generations.lifecycle (the actions below), never the change form.
    readonly_fields = ["id", "status", "created_at", "started_at", "finished_at", "worker_name"]
    inlines = [ImageInline]
    actions = ["retry_failed", "move_to_front"]

    @admin.action(description="Retry failed generations")
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Generation]) -> None:
        retried, not_failed, short = 0, 0, []
        for generation in queryset.select_related("user"):
            try:
                if retry_failed_generation(generation=generation):
                    retried += 1
                else:
                    not_failed += 1
            except InsufficientCredits as exc:
                short.append(f"{generation.id} ({exc})")
        self.message_user(request, f"Retried {retried} failed generation(s).", messages.SUCCESS)
        if not_failed:
            self.message_user(request, f"Skipped {not_failed} that were not failed.", messages.WARNING)
        if short:
            self.message_user(
                request, f"Skipped for insufficient credits: {'; '.join(short)}.", messages.WARNING
            )

    @admin.action(description="Move to the front of its lane")
    def move_to_front(self, request: HttpRequest, queryset: QuerySet[Generation]) -> None:
        moved, skipped = 0, []
        for generation in queryset:
            if move_generation_to_front(generation=generation):
                moved += 1
            else:
                skipped.append(f"{generation.id} ({generation.status})")
        self.message_user(request, f"Moved {moved} queued generation(s) to the front.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Skipped, not queued: {'; '.join(skipped)}.", messages.WARNING)


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin[Image]):
    list_display = [
        "id",
        "generation",
        "index",
        "is_public",
        "hidden",
        "content_rating",
        "like_count",
        "created_at",
    ]
    list_filter = ["is_public", "hidden", "content_rating"]
    search_fields = ["id", "generation__id", "generation__user__username"]
    actions = ["hide", "unhide", "rate_mature", "rate_general"]

    @admin.action(description="Hide from Explore")
    def hide(self, request: HttpRequest, queryset: QuerySet[Image]) -> None:
        set_hidden(queryset, hidden=True)

    @admin.action(description="Show in Explore again")
    def unhide(self, request: HttpRequest, queryset: QuerySet[Image]) -> None:
        set_hidden(queryset, hidden=False)

    @admin.action(description="Rate mature (blurred in Explore unless opted in)")
    def rate_mature(self, request: HttpRequest, queryset: QuerySet[Image]) -> None:
        queryset.update(content_rating=ContentRating.MATURE)

    @admin.action(description="Rate general")
    def rate_general(self, request: HttpRequest, queryset: QuerySet[Image]) -> None:
        queryset.update(content_rating=ContentRating.GENERAL)


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin[Upload]):
    list_display = ["id", "user", "width", "height", "created_at"]


def set_hidden(queryset: QuerySet[Image], *, hidden: bool) -> None:
    """The selected images, listed before the update: under a changelist filter on `hidden` the
    queryset would select none of them afterwards, and their objects would keep their old ACL."""
    images = list(queryset)
    Image.objects.filter(pk__in=[image.pk for image in images]).update(hidden=hidden)
    sync_visibility(images)

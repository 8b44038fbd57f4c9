from django.contrib import admin

from generations.models import Generation, Image, Upload


class ImageInline(admin.TabularInline[Image, Generation]):
    model = Image
    extra = 0
    readonly_fields = ["id", "index", "seed", "width", "height", "original", "thumbnail", "sha256"]
    can_delete = False


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin[Generation]):
    list_display = ["id", "user", "status", "kind", "model_name", "lane", "created_at", "finished_at"]
    list_filter = ["status", "kind", "model_name", "lane"]
    search_fields = ["id", "prompt", "user__username"]
    readonly_fields = ["id", "created_at", "started_at", "finished_at", "worker_name"]
    inlines = [ImageInline]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin[Image]):
    list_display = ["id", "generation", "index", "seed", "width", "height", "created_at"]
    search_fields = ["id", "generation__id"]


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin[Upload]):
    list_display = ["id", "user", "width", "height", "created_at"]

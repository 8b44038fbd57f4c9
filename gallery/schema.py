"""OpenAPI descriptions of the gallery's responses (the views build them as plain dicts)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers

from gallery.models import ReportReason
from gallery.selectors import SORTS, TOP_WINDOWS
from generations.schema import ThumbnailSerializer


class LineageSerializer(serializers.Serializer[Any]):
    image = serializers.UUIDField(allow_null=True, help_text="null: a parent you may not see")
    action = serializers.CharField()
    prompt = serializers.CharField(allow_null=True)


class ChildSerializer(serializers.Serializer[Any]):
    generation = serializers.UUIDField()
    action = serializers.CharField(allow_blank=True)
    status = serializers.CharField()


# "parent" would shadow Field.parent, so this one is built inline too.
GALLERY_IMAGE_FIELDS: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    "id": serializers.UUIDField(),
    "object": serializers.CharField(),
    "url": serializers.CharField(),
    "thumbnail_url": serializers.CharField(),
    "thumbnails": ThumbnailSerializer(many=True),
    "page_url": serializers.CharField(),
    "width": serializers.IntegerField(),
    "height": serializers.IntegerField(),
    "seed": serializers.IntegerField(),
    "generation": serializers.UUIDField(),
    "prompt": serializers.CharField(),
    "negative_prompt": serializers.CharField(allow_blank=True),
    "model": serializers.CharField(),
    "action": serializers.CharField(),
    "parent": serializers.UUIDField(allow_null=True),
    "owner": serializers.CharField(),
    "is_public": serializers.BooleanField(),
    "hidden": serializers.BooleanField(),
    "content_rating": serializers.ChoiceField(choices=["general", "mature"]),
    "like_count": serializers.IntegerField(),
    "liked": serializers.BooleanField(),
    "mine": serializers.BooleanField(),
    "created_at": serializers.DateTimeField(),
    "lineage": LineageSerializer(many=True, required=False),
    "children": ChildSerializer(many=True, required=False),
}
GalleryImageSerializer = inline_serializer("GalleryImage", fields=GALLERY_IMAGE_FIELDS)


GalleryPageSerializer = inline_serializer(
    "GalleryPage",
    fields={
        "data": inline_serializer("GalleryImage", fields=GALLERY_IMAGE_FIELDS, many=True),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
    },
)


class PrefillSerializer(serializers.Serializer[Any]):
    object = serializers.CharField()
    remix_of = serializers.UUIDField()
    prompt = serializers.CharField()
    negative_prompt = serializers.CharField(allow_blank=True)
    model = serializers.CharField()
    seed = serializers.IntegerField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    steps = serializers.IntegerField()
    guidance = serializers.FloatField()
    sampler = serializers.CharField()


class VaryInSerializer(serializers.Serializer[Any]):
    strength = serializers.ChoiceField(choices=["subtle", "strong"], default="subtle")


class InpaintInSerializer(serializers.Serializer[Any]):
    mask = serializers.FileField(help_text="PNG or WebP of the image's size: white repaints, black keeps.")
    prompt = serializers.CharField(max_length=2000)
    negative_prompt = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class ReportInSerializer(serializers.Serializer[Any]):
    reason = serializers.ChoiceField(choices=ReportReason.choices)
    details = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")


class ReportOutSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    object = serializers.CharField()
    image = serializers.UUIDField()
    reason = serializers.CharField()
    status = serializers.CharField()


class StyleSerializer(serializers.Serializer[Any]):
    id = serializers.SlugField()
    object = serializers.CharField()
    name = serializers.CharField()
    prompt_template = serializers.CharField()
    negative_prompt = serializers.CharField(allow_blank=True)


StyleListSerializer = inline_serializer("StyleList", fields={"data": StyleSerializer(many=True)})


class ExploreParamsSerializer(serializers.Serializer[Any]):
    sort = serializers.ChoiceField(choices=SORTS, default="new")
    window = serializers.ChoiceField(choices=list(TOP_WINDOWS), default="week")
    q = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")


EXPLORE_PARAMETERS = [
    OpenApiParameter("sort", str, enum=list(SORTS), required=False),
    OpenApiParameter("window", str, enum=list(TOP_WINDOWS), required=False, description="For sort=top."),
    OpenApiParameter("q", str, required=False, description="Words to search in prompts."),
    OpenApiParameter("cursor", str, required=False),
    OpenApiParameter("limit", int, required=False),
]

"""OpenAPI descriptions of the API's responses (the views build them as plain dicts)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, inline_serializer
from rest_framework import serializers

from generations.models import GenerationKind
from generations.samplers import SAMPLER_NAMES


class ThumbnailSerializer(serializers.Serializer[Any]):
    size = serializers.IntegerField(help_text="Its longest side (the `size` of its URL).")
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    url = serializers.CharField()


class ImageOutSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    url = serializers.CharField()
    thumbnail_url = serializers.CharField()
    thumbnails = ThumbnailSerializer(many=True, help_text="WebP thumbnails, smallest first (srcset).")
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    seed = serializers.IntegerField()


class GenerationErrorSerializer(serializers.Serializer[Any]):
    code = serializers.CharField()
    message = serializers.CharField()


class GenerationOutSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    object = serializers.CharField()
    status = serializers.ChoiceField(
        choices=["pending", "queued", "running", "succeeded", "failed", "canceled"]
    )
    kind = serializers.ChoiceField(choices=GenerationKind.values)
    model = serializers.CharField()
    prompt = serializers.CharField()
    negative_prompt = serializers.CharField(allow_blank=True)
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    steps = serializers.IntegerField()
    guidance = serializers.FloatField()
    sampler = serializers.ChoiceField(choices=SAMPLER_NAMES)
    seed = serializers.IntegerField()
    n = serializers.IntegerField()
    input_image = serializers.UUIDField(allow_null=True)
    mask_image = serializers.UUIDField(allow_null=True)
    strength = serializers.FloatField(allow_null=True)
    lane = serializers.CharField()
    mode = serializers.ChoiceField(choices=["fast", "relax"])
    credits = serializers.CharField()
    queue_position = serializers.IntegerField(allow_null=True)
    eta_seconds = serializers.IntegerField(allow_null=True)
    progress = serializers.FloatField()
    step = serializers.IntegerField()
    total_steps = serializers.IntegerField()
    images = ImageOutSerializer(many=True)
    error = GenerationErrorSerializer(allow_null=True)
    waiting_reason = serializers.ChoiceField(
        choices=["waiting_for_worker"],
        allow_null=True,
        help_text="Why a queued job has no ETA: `waiting_for_worker`, its pool has had no live worker "
        "for ATELIER_WORKERLESS_SECONDS.",
    )
    cached = serializers.BooleanField(
        help_text="Answered from the images of an identical finished request (no GPU work)."
    )
    fallback_from = serializers.CharField(
        allow_null=True, help_text="The model asked for, when this ran on its fallback (circuit open)."
    )
    preemptions = serializers.IntegerField(
        help_text="Times a waiting priority job stopped this free or relax job mid-run; it went back "
        "to its lane and resumed where it stopped (or restarted), charged once."
    )
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    url = serializers.CharField()


# A field named "data" would shadow Serializer.data, so these two are built inline.
GenerationPageSerializer = inline_serializer(
    "GenerationPage",
    fields={
        "data": GenerationOutSerializer(many=True),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
    },
)


class QuoteSerializer(serializers.Serializer[Any]):
    object = serializers.CharField()
    credits = serializers.CharField()
    credits_per_image = serializers.CharField()
    balance = serializers.CharField()
    sufficient = serializers.BooleanField()
    lane = serializers.CharField()


class UploadOutSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    object = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()


class UploadInSerializer(serializers.Serializer[Any]):
    file = serializers.ImageField()


class ModelOutSerializer(serializers.Serializer[Any]):
    id = serializers.CharField()
    object = serializers.CharField()
    pool = serializers.CharField()
    family = serializers.CharField()
    min_side = serializers.IntegerField()
    max_side = serializers.IntegerField()
    default_side = serializers.IntegerField()
    size_step = serializers.IntegerField(help_text="Width and height must be multiples of it.")
    max_steps = serializers.IntegerField()
    default_steps = serializers.IntegerField()
    default_guidance = serializers.FloatField()
    samplers = serializers.ListField(
        child=serializers.ChoiceField(choices=SAMPLER_NAMES),
        help_text="The samplers this model can run, its own (`default`) first.",
    )
    examples = serializers.ListField(
        child=serializers.CharField(), help_text="Prompts the model renders well (may be empty)."
    )


ModelListSerializer = inline_serializer("ModelList", fields={"data": ModelOutSerializer(many=True)})


CREATE_EXAMPLE = OpenApiExample(
    "A 512x512 image",
    value={"prompt": "a lighthouse at dusk, oil painting", "width": 512, "height": 512, "steps": 20, "n": 1},
    request_only=True,
)
PREFER = OpenApiParameter(
    "Prefer",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="`wait=N` (N ≤ 60): answer 201 when done.",
)
IDEMPOTENCY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Repeat a POST safely: the first response is returned for 24 h.",
)
GENERATION_FILTERS = [
    OpenApiParameter(
        "status",
        str,
        required=False,
        enum=["pending", "queued", "running", "succeeded", "failed", "canceled"],
    ),
    OpenApiParameter("model", str, required=False),
    OpenApiParameter("created_after", OpenApiTypes.DATE, required=False),
    OpenApiParameter("created_before", OpenApiTypes.DATE, required=False),
    OpenApiParameter("q", str, required=False, description="Words to search in prompts."),
]

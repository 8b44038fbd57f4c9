from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

from core.events import EVENT_TYPES
from generations.extensions import style_preset
from generations.loras import LoraRequest, available_loras
from generations.models import GenerationAction
from generations.registry import default_model, get_model
from generations.samplers import DEFAULT_SAMPLER, SAMPLER_NAMES, samplers_for
from generations.selectors import upload_of, viewable_image
from generations.services import GenerationSpec

MAX_SEED = 2**32 - 1


class LoraSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=255, help_text="A LoRA of `GET /api/v1/models` (`loras`).")
    weight = serializers.FloatField(required=False, default=1.0, help_text="0 leaves the model as it is.")

    def validate_weight(self, value: float) -> float:
        limit = settings.ATELIER_LORA_MAX_WEIGHT
        if not -limit <= value <= limit:
            raise serializers.ValidationError(f"A LoRA's weight must be between {-limit:g} and {limit:g}.")
        return value


class GenerationCreateSerializer(serializers.Serializer[Any]):
    prompt = serializers.CharField(trim_whitespace=True)
    negative_prompt = serializers.CharField(required=False, allow_blank=True, default="")
    model = serializers.CharField(required=False)
    width = serializers.IntegerField(required=False)
    height = serializers.IntegerField(required=False)
    steps = serializers.IntegerField(required=False, min_value=1, max_value=150)
    guidance = serializers.FloatField(required=False, min_value=0.0, max_value=30.0)
    sampler = serializers.ChoiceField(
        choices=SAMPLER_NAMES,
        required=False,
        default=DEFAULT_SAMPLER,
        help_text="The denoising sampler; `default` is the model's own. A model lists the ones it "
        "supports in `GET /api/v1/models` (flow-matching models such as SD3: `default` and `euler`).",
    )
    loras = LoraSerializer(
        many=True,
        required=False,
        default=list,
        help_text="LoRAs to apply while rendering, each with its weight.",
    )
    seed = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=MAX_SEED)
    n = serializers.IntegerField(required=False, min_value=1, max_value=4, default=1)
    input_image = serializers.UUIDField(required=False, allow_null=True)
    mask_image = serializers.UUIDField(required=False, allow_null=True)
    strength = serializers.FloatField(required=False, min_value=0.01, max_value=1.0)
    mode = serializers.ChoiceField(choices=["fast", "relax"], required=False, default="fast")
    private = serializers.BooleanField(required=False, allow_null=True, default=None)
    style_preset = serializers.SlugField(required=False, allow_blank=True, help_text="A style preset's slug.")
    remix_of = serializers.UUIDField(
        required=False, allow_null=True, help_text="The image this remixes (recorded as its parent)."
    )
    cache = serializers.BooleanField(
        required=False,
        default=True,
        help_text="With an explicit seed, an identical finished request is answered from its stored "
        "images (`cached: true`, no GPU work, no charge); false renders it again.",
    )
    allow_fallback = serializers.BooleanField(
        required=False,
        default=True,
        help_text="While the model is unavailable (its circuit is open), run on the fallback model it "
        "names instead of answering 503 `model_unavailable` (recorded as `fallback_from`).",
    )
    webhook_url = serializers.URLField(max_length=500, required=False)
    webhook_events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES), required=False, default=list
    )

    def validate_prompt(self, value: str) -> str:
        limit = settings.ATELIER_PROMPT_MAX_CHARS
        if len(value) > limit:
            raise serializers.ValidationError(f"The prompt is longer than {limit} characters.")
        return value

    def validate_negative_prompt(self, value: str) -> str:
        return self.validate_prompt(value)

    def validate_loras(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(value) > settings.ATELIER_MAX_LORAS:
            raise serializers.ValidationError(f"At most {settings.ATELIER_MAX_LORAS} LoRAs at once.")
        if len({lora["name"] for lora in value}) < len(value):
            raise serializers.ValidationError("Each LoRA may be given once.")
        known = set(available_loras()) if value else set()
        for lora in value:
            if lora["name"] not in known:
                message = f"Unknown LoRA {lora['name']!r}; GET /api/v1/models lists them."
                raise serializers.ValidationError(ErrorDetail(message, code="lora_not_found"))
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}  # ErrorDetail (a str) where a message has its own code
        name = attrs.get("model")
        model = get_model(name) if name else default_model()
        if model is None:
            raise serializers.ValidationError({"model": [f"Unknown model {name!r}."]})
        for field in ("width", "height"):
            value = attrs.setdefault(field, model.default_side)
            if value % model.size_step:
                errors[field] = [f"{field.capitalize()} must be a multiple of {model.size_step}."]
            elif not model.min_side <= value <= model.max_side:
                errors[field] = [
                    f"{field.capitalize()} must be between {model.min_side} and {model.max_side}."
                ]
        steps = attrs.setdefault("steps", model.default_steps)
        attrs.setdefault("guidance", model.default_guidance)  # few-step (turbo) models want 0
        if steps > model.max_steps:
            errors["steps"] = [f"This model allows at most {model.max_steps} steps."]
        supported = samplers_for(model.family)
        if attrs["sampler"] not in supported:
            message = (
                f"{model.name} ({model.family}) cannot use the {attrs['sampler']!r} sampler; "
                f"it supports {', '.join(supported)}."
            )
            errors["sampler"] = [ErrorDetail(message, code="sampler_not_supported")]
        upload = None
        if attrs.get("input_image"):
            upload = upload_of(self.context["user"], attrs["input_image"])
            if upload is None:
                errors["input_image"] = ["No such upload."]
        elif "strength" in attrs:
            errors["strength"] = ["Strength applies only with an input_image."]
        mask = None
        if attrs.get("mask_image"):
            mask = upload_of(self.context["user"], attrs["mask_image"])
            if mask is None:
                errors["mask_image"] = ["No such upload."]
            elif upload is None:
                errors["mask_image"] = ["A mask needs an input_image to paint on."]
            elif (mask.width, mask.height) != (upload.width, upload.height):
                size = f"{upload.width}x{upload.height}"
                errors["mask_image"] = [f"The mask must be the input image's size ({size})."]
        prompt, negative_prompt = attrs["prompt"], attrs.get("negative_prompt", "")
        if attrs.get("style_preset"):
            preset = style_preset(attrs["style_preset"])
            if preset is None:
                errors["style_preset"] = [f"Unknown style {attrs['style_preset']!r}."]
            else:
                prompt, negative_prompt = preset.apply(prompt, negative_prompt)
        parent = None
        if attrs.get("remix_of"):
            parent = viewable_image(self.context["user"], attrs["remix_of"])
            if parent is None:
                errors["remix_of"] = ["No such image."]
        if errors:
            raise serializers.ValidationError(errors)
        attrs["spec"] = GenerationSpec(
            model=model.name,
            pool=model.pool,
            prompt=prompt,
            negative_prompt=negative_prompt,
            width=attrs["width"],
            height=attrs["height"],
            steps=steps,
            guidance=attrs["guidance"],
            sampler=attrs["sampler"],
            loras=tuple(LoraRequest.of(lora) for lora in attrs.get("loras", [])),
            seed=attrs.get("seed"),
            n=attrs["n"],
            input_upload=upload,
            mask_upload=mask,
            strength=attrs.get("strength", 1.0 if mask else 0.6) if upload else None,
            relax=attrs["mode"] == "relax",
            private=attrs.get("private"),
            parent=parent,
            action=GenerationAction.REMIX if parent else GenerationAction.NONE,
            use_cache=attrs["cache"],
            allow_fallback=attrs["allow_fallback"],
        )
        return attrs

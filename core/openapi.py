"""OpenAPI descriptions of the error body that every API answers with (core/errors.py)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer[Any]):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()


class ErrorSerializer(serializers.Serializer[Any]):
    error = ErrorDetailSerializer()


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    descriptions = {
        400: "A field is invalid (`validation_error`, naming the field) or the body is malformed.",
        401: "No session and no valid API key.",
        402: "Not enough credits (`insufficient_credits`).",
        403: "The plan does not allow this (`model_not_in_plan`, `relax_not_allowed`).",
        404: "No such object, or another user's.",
        409: "Already finished, or an Idempotency-Key reused with another body.",
        429: "Rate limited or `queue_full`; see Retry-After.",
        503: "The model is unavailable for now (`model_unavailable`, its circuit is open); see Retry-After.",
    }
    return {status: OpenApiResponse(ErrorSerializer, description=descriptions[status]) for status in statuses}

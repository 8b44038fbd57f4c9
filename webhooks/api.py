"""``/api/v1/webhooks``: register endpoints, see deliveries, send a test event."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from core.errors import ApiError
from core.events import EVENT_TYPES, iso
from core.openapi import errors
from core.pagination import paginated
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import create_endpoint, is_uuid, send_test_event
from webhooks.targets import UnsafeUrl, check_url


class EndpointInSerializer(serializers.Serializer[Any]):
    url = serializers.URLField(max_length=500)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES), required=False, default=list
    )
    description = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    enabled = serializers.BooleanField(required=False, default=True)


def endpoint_resource(endpoint: WebhookEndpoint, *, secret: bool = False) -> dict[str, Any]:
    body = {
        "id": str(endpoint.id),
        "object": "webhook_endpoint",
        "url": endpoint.url,
        "events": endpoint.events,
        "enabled": endpoint.enabled,
        "description": endpoint.description,
        "created_at": iso(endpoint.created_at),
    }
    if secret:
        body["secret"] = endpoint.secret  # shown once, at creation
    return body


def delivery_resource(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": [
            {
                "at": iso(a.at),
                "status_code": a.status_code,
                "error": a.error,
                "duration_ms": a.duration_ms,
            }
            for a in delivery.attempt_log.all()
        ],
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.status == "pending" else None,
        "created_at": iso(delivery.created_at),
    }


def user_of(request: Request) -> User:
    assert isinstance(request.user, User)
    return request.user


def endpoint_of(request: Request, endpoint_id: str) -> WebhookEndpoint:
    endpoint = (
        WebhookEndpoint.objects.filter(user=user_of(request), pk=endpoint_id).first()
        if is_uuid(endpoint_id)
        else None
    )
    if endpoint is None:
        raise ApiError("not_found", "No such webhook endpoint.")
    return endpoint


def unsafe(exc: UnsafeUrl) -> ApiError:
    return ApiError("validation_error", f"Invalid field(s): url. {exc}", {"url": [str(exc)]})


class EndpointOutSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    object = serializers.CharField()
    url = serializers.URLField()
    events = serializers.ListField(child=serializers.CharField())
    enabled = serializers.BooleanField()
    description = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    secret = serializers.CharField(required=False, help_text="Only in the response that creates it.")


class AttemptOutSerializer(serializers.Serializer[Any]):
    at = serializers.DateTimeField()
    status_code = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    duration_ms = serializers.IntegerField()


class DeliveryOutSerializer(serializers.Serializer[Any]):
    id = serializers.CharField()
    event_type = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "succeeded", "failed"])
    attempts = AttemptOutSerializer(many=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


ENDPOINT_LIST = inline_serializer("WebhookEndpointList", fields={"data": EndpointOutSerializer(many=True)})
DELIVERY_LIST = inline_serializer(
    "WebhookDeliveryPage",
    fields={
        "data": DeliveryOutSerializer(many=True),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
    },
)
ENDPOINT_EXAMPLE = OpenApiExample(
    "Succeeded and failed generations only",
    value={
        "url": "https://example.com/atelier-hooks",
        "events": ["generation.succeeded", "generation.failed"],
    },
    request_only=True,
)


class WebhookListApi(APIView):
    @extend_schema(operation_id="webhooks_list", responses={200: ENDPOINT_LIST, **errors(401)})
    def get(self, request: Request) -> Response:
        endpoints = WebhookEndpoint.objects.filter(user=user_of(request))
        return Response({"data": [endpoint_resource(e) for e in endpoints]})

    @extend_schema(
        request=EndpointInSerializer,
        examples=[ENDPOINT_EXAMPLE],
        responses={201: EndpointOutSerializer, **errors(400, 401)},
    )
    def post(self, request: Request) -> Response:
        serializer = EndpointInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            endpoint = create_endpoint(
                user=user_of(request), url=data["url"], events=data["events"], description=data["description"]
            )
        except UnsafeUrl as exc:
            raise unsafe(exc) from exc
        return Response(endpoint_resource(endpoint, secret=True), status=201)


class WebhookDetailApi(APIView):
    @extend_schema(responses={200: EndpointOutSerializer, **errors(401, 404)})
    def get(self, request: Request, endpoint_id: str) -> Response:
        return Response(endpoint_resource(endpoint_of(request, endpoint_id)))

    @extend_schema(
        request=EndpointInSerializer(partial=True),
        responses={200: EndpointOutSerializer, **errors(400, 401, 404)},
    )
    def patch(self, request: Request, endpoint_id: str) -> Response:
        endpoint = endpoint_of(request, endpoint_id)
        changes = request.data  # the stored URL completes a partial object; anything else is refused
        data = {"url": endpoint.url, **changes} if isinstance(changes, dict) else changes
        serializer = EndpointInSerializer(data=data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if "url" in request.data:
            try:
                check_url(data["url"])
            except UnsafeUrl as exc:
                raise unsafe(exc) from exc
        for field in ("url", "events", "description", "enabled"):
            if field in request.data:
                setattr(endpoint, field, data[field])
        endpoint.save()
        return Response(endpoint_resource(endpoint))

    @extend_schema(responses={204: None, **errors(401, 404)})
    def delete(self, request: Request, endpoint_id: str) -> Response:
        endpoint_of(request, endpoint_id).delete()
        return Response(status=204)


class WebhookTestApi(APIView):
    @extend_schema(request=None, responses={202: DeliveryOutSerializer, **errors(401, 404)})
    def post(self, request: Request, endpoint_id: str) -> Response:
        delivery = send_test_event(endpoint_of(request, endpoint_id))
        return Response(delivery_resource(delivery), status=202)


class WebhookDeliveriesApi(APIView):
    @extend_schema(responses={200: DELIVERY_LIST, **errors(401, 404)})
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = endpoint_of(request, endpoint_id)
        return paginated(
            request,
            self,
            endpoint.deliveries.prefetch_related("attempt_log"),
            ordering="-created_at",
            page_size=20,
            render=lambda page: [delivery_resource(d) for d in page],
        )

"""``/api/v1/``: thin views that validate, call one service and serialize."""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from typing import Any

from django.http import HttpResponse, HttpResponseRedirect
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from PIL import Image as PILImage
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.callers import current_user
from accounts.models import User
from billing.credits import format_credits
from core.errors import ApiError
from core.openapi import errors
from core.pagination import paginated
from generations import schema, thumbnails
from generations.filters import filtered_generations
from generations.loras import available_loras
from generations.models import Image
from generations.registry import all_models
from generations.samplers import samplers_for
from generations.selectors import (
    generation_of,
    generation_resource,
    generations_of,
    thumbnail_sizes,
    viewable_image,
)
from generations.serializers import GenerationCreateSerializer
from generations.services import (
    GenerationSpec,
    cancel_generation,
    quote_generation,
    submit_generation,
    upload_create,
)
from generations.signing import signed_image_id
from generations.storage import is_remote, open_content, presigned_url, public_url, variant_path
from generations.tiers import note_view
from generations.uploads import read_upload
from generations.waiting import preferred_wait, wait_for_terminal
from webhooks.services import endpoint_for_generation
from webhooks.targets import UnsafeUrl

log = logging.getLogger(__name__)


class GenerationListApi(APIView):
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(
        operation_id="generations_list",
        parameters=schema.GENERATION_FILTERS,
        responses={200: schema.GenerationPageSerializer, **errors(401)},
    )
    def get(self, request: Request) -> Response:
        generations = filtered_generations(generations_of(current_user(request)), request.query_params)
        return paginated(
            request,
            self,
            generations,
            ordering="-created_at",
            page_size=20,
            render=lambda page: [generation_resource(g) for g in page],
        )

    @extend_schema(
        request=GenerationCreateSerializer,
        parameters=[schema.PREFER, schema.IDEMPOTENCY],
        examples=[schema.CREATE_EXAMPLE],
        responses={
            201: schema.GenerationOutSerializer,
            202: schema.GenerationOutSerializer,
            **errors(400, 401, 402, 403, 409, 429, 503),
        },
    )
    def post(self, request: Request) -> Response:
        user = current_user(request)
        serializer = GenerationCreateSerializer(data=request.data, context={"user": user})
        serializer.is_valid(raise_exception=True)
        spec, webhook = with_webhook(user, serializer.validated_data)
        generation = submit_generation(user=user, spec=spec)
        if generation.is_terminal:  # answered from the result cache: finished already
            body = generation_resource(generation) | webhook
            return Response(body, status=201, headers={"Location": body["url"]})
        wait = preferred_wait(request.headers.get("Prefer", ""))
        if wait:
            finished = wait_for_terminal(generation.id, wait)
            if finished is not None:
                body = generation_resource(finished) | webhook
                headers = {"Location": body["url"], "Preference-Applied": f"wait={wait}"}
                return Response(body, status=201, headers=headers)
        body = generation_resource(generation) | webhook
        return Response(body, status=202, headers={"Location": body["url"]})


class GenerationQuoteApi(APIView):
    @extend_schema(
        request=GenerationCreateSerializer,
        responses={200: schema.QuoteSerializer, **errors(400, 401, 403)},
    )
    def post(self, request: Request) -> Response:
        user = current_user(request)
        serializer = GenerationCreateSerializer(data=request.data, context={"user": user})
        serializer.is_valid(raise_exception=True)
        quote = quote_generation(user=user, spec=serializer.validated_data["spec"])
        balance = quote.account.balance
        return Response(
            {
                "object": "quote",
                "credits": format_credits(quote.cost.total),
                "credits_per_image": format_credits(quote.cost.per_image),
                "balance": format_credits(balance),
                "sufficient": balance >= quote.cost.total,
                "lane": quote.lane,
            }
        )


def with_webhook(user: User, data: dict[str, Any]) -> tuple[GenerationSpec, dict[str, Any]]:
    """The spec with the generation's own webhook endpoint, made on first use of its URL; the
    endpoint's secret is in the response only then."""
    spec: GenerationSpec = data["spec"]
    if not data.get("webhook_url"):
        return spec, {}
    try:
        endpoint, created = endpoint_for_generation(user=user, url=data["webhook_url"])
    except UnsafeUrl as exc:
        raise ApiError(
            "validation_error", f"Invalid field(s): webhook_url. {exc}", {"webhook_url": [str(exc)]}
        ) from exc
    webhook = {"id": str(endpoint.id), "url": endpoint.url}
    if created:
        webhook["secret"] = endpoint.secret
    spec = replace(spec, webhook=endpoint, webhook_events=tuple(data.get("webhook_events") or ()))
    return spec, {"webhook": webhook}


def owned_generation(request: Request, generation_id: Any) -> Any:
    generation = generation_of(current_user(request), generation_id)
    if generation is None:
        raise ApiError("not_found", "No such generation.")
    return generation


class GenerationDetailApi(APIView):
    @extend_schema(responses={200: schema.GenerationOutSerializer, **errors(401, 404)})
    def get(self, request: Request, generation_id: str) -> Response:
        return Response(generation_resource(owned_generation(request, generation_id)))


class GenerationCancelApi(APIView):
    @extend_schema(request=None, responses={202: schema.GenerationOutSerializer, **errors(401, 404, 409)})
    def post(self, request: Request, generation_id: str) -> Response:
        generation = cancel_generation(generation=owned_generation(request, generation_id))
        return Response(generation_resource(generation), status=202)


class UploadApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request=schema.UploadInSerializer,
        responses={201: schema.UploadOutSerializer, **errors(400, 401)},
    )
    def post(self, request: Request) -> Response:
        file = request.FILES.get("file")
        if file is None:
            raise ApiError("validation_error", "Invalid field(s): file.", {"file": ["No file was sent."]})
        upload = upload_create(user=current_user(request), data=read_upload(file))
        body = {"id": str(upload.id), "object": "upload", "width": upload.width, "height": upload.height}
        return Response(body, status=201)


# Published images never change under their id: any cache may keep them for a year.
PUBLIC_CACHE = "public, max-age=31536000, immutable"


class ImageFileApi(APIView):
    """An image file: published ones to anyone, cacheable; private ones only to their owner
    (privately cached) or to whoever holds a valid signed URL."""

    variant = "original"
    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[
            OpenApiParameter("signature", str, required=False),
            OpenApiParameter("download", str, required=False),
            OpenApiParameter("as", str, enum=["png", "webp"], required=False),
            OpenApiParameter("size", int, required=False, description="A thumbnail's longest side."),
        ],
        responses={
            (200, "image/png"): OpenApiTypes.BINARY,
            (200, "image/webp"): OpenApiTypes.BINARY,
            **errors(401, 404),
        },
    )
    def get(self, request: Request, image_id: str) -> HttpResponse:
        signature = request.query_params.get("signature")
        if signature:
            variant = "content" if self.variant == "original" else "thumbnail"
            granted = signed_image_id(signature, variant)
            image = Image.objects.filter(pk=image_id).first() if granted == image_id else None
        else:
            user = request.user if isinstance(request.user, User) else None
            image = viewable_image(user, image_id, related=False)
            if image is None and user is None:
                raise ApiError("not_authenticated")
        if image is None:
            raise ApiError("not_found", "No such image.")
        if self.variant == "original":
            path, content_type, extension = image.original, "image/png", "png"
            note_view(image)  # back from the cold tier if it is there; one Redis write
        else:
            side, path = thumbnail_path(image, request.query_params.get("size"))
            content_type, extension = "image/webp", "webp"
        public = image.is_public and not image.hidden
        converting = self.variant == "original" and request.query_params.get("as") == "webp"
        if is_remote() and not converting:
            return object_redirect(image, path, extension, public, bool(request.query_params.get("download")))
        try:
            if self.variant == "original":
                content = open_content(path)
            else:
                content = thumbnails.read(image.original, path, side)
        except FileNotFoundError:
            log.error("image %s: its file %s is missing", image.id, path)
            raise ApiError("not_found", "This image's file is missing.") from None
        if converting:
            content, content_type, extension = full_size_webp(content), "image/webp", "webp"
        response = HttpResponse(content, content_type=content_type)
        response["Cache-Control"] = PUBLIC_CACHE if public else "private, max-age=3600"
        if request.query_params.get("download"):
            response["Content-Disposition"] = f'attachment; filename="atelier-{image.id}.{extension}"'
        return response


def thumbnail_path(image: Image, size: str | None) -> tuple[int, str]:
    """The longest side and path of the thumbnail asked for (one of the image's ``thumbnails``);
    the smallest without a size."""
    sizes = thumbnail_sizes(image)
    if size is None:
        return sizes[0], image.thumbnail
    if not size.isdigit() or int(size) not in sizes:
        message = "size must be one of this image's thumbnail sizes: " + ", ".join(map(str, sizes))
        raise ApiError("validation_error", f"Invalid field(s): size. {message}", {"size": [message]})
    side = int(size)
    return side, image.thumbnail if side == sizes[0] else variant_path(image.thumbnail, side)


def object_redirect(image: Image, path: str, extension: str, public: bool, download: bool) -> HttpResponse:
    """On S3 the bytes come from the store itself: a published image's plain (cacheable) URL, or a
    presigned URL that expires in ATELIER_SIGNED_URL_SECONDS for anything private."""
    name = f"atelier-{image.id}.{extension}" if download else None
    target = public_url(path) if public and not download else presigned_url(path, download_name=name)
    response = HttpResponseRedirect(target)
    response["Cache-Control"] = "public, max-age=3600" if public else "private, no-store"
    return response


def full_size_webp(png: bytes) -> bytes:
    """The original at full size as WebP (a download option; lists use the small thumbnail)."""
    buffer = io.BytesIO()
    PILImage.open(io.BytesIO(png)).save(buffer, "WEBP", quality=90)
    return buffer.getvalue()


class ModelListApi(APIView):
    """The models, and the LoRA files (names for ``loras`` and ComfyUI's ``lora_name``)."""

    @extend_schema(responses={200: schema.ModelListSerializer, **errors(401)})
    def get(self, request: Request) -> Response:
        data = [
            {
                "id": m.name,
                "object": "model",
                "pool": m.pool,
                "family": m.family,
                "min_side": m.min_side,
                "max_side": m.max_side,
                "default_side": m.default_side,
                "size_step": m.size_step,
                "max_steps": m.max_steps,
                "default_steps": m.default_steps,
                "default_guidance": m.default_guidance,
                "samplers": list(samplers_for(m.family)),
                "examples": list(m.examples),
            }
            for m in all_models().values()
        ]
        return Response({"data": data, "loras": available_loras()})

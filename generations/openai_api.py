"""OpenAI-compatible image endpoints, so the official ``openai`` client works unchanged:
``POST /v1/images/generations`` and ``GET /v1/models``."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from accounts.authentication import bearer_token
from accounts.models import User
from accounts.services import api_key_user
from generations.errors import ApiError
from generations.models import GenerationStatus, Image
from generations.registry import all_models
from generations.serializers import GenerationCreateSerializer
from generations.services import submit_generation
from generations.signing import signed_image_url
from generations.storage import open_content
from generations.waiting import wait_for_terminal

SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")
WAIT_SECONDS = 120


def openai_error(status: int, message: str, *, code: str, param: str | None = None) -> JsonResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JsonResponse(body, status=status)


def authenticated(request: HttpRequest) -> User | None:
    token = bearer_token(request.headers.get("Authorization", ""))
    return api_key_user(token) if token else None


@csrf_exempt
@require_POST
def images_generations(request: HttpRequest) -> JsonResponse:
    user = authenticated(request)
    if user is None:
        return openai_error(401, "Invalid or missing API key.", code="invalid_api_key")
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return openai_error(400, "The body is not valid JSON.", code="invalid_json")
    if not isinstance(body, dict):
        return openai_error(400, "The body must be a JSON object.", code="invalid_json")
    fields: dict[str, Any] = {"prompt": body.get("prompt", ""), "n": body.get("n", 1)}
    if body.get("model"):
        fields["model"] = body["model"]
    if body.get("size"):
        match = SIZE.match(str(body["size"]))
        if not match:
            return openai_error(400, "size must look like 512x512.", code="invalid_size", param="size")
        fields["width"], fields["height"] = int(match.group(1)), int(match.group(2))
    response_format = body.get("response_format") or "url"
    if response_format not in ("url", "b64_json"):
        return openai_error(
            400, "response_format must be url or b64_json.", code="invalid_value", param="response_format"
        )
    serializer = GenerationCreateSerializer(data=fields, context={"user": user})
    if not serializer.is_valid():
        param = next(iter(serializer.errors))
        message = f"{param}: {' '.join(str(m) for m in serializer.errors[param])}"
        mapped = {"width": "size", "height": "size"}.get(param, param)
        return openai_error(400, message, code="invalid_value", param=mapped)
    try:
        generation = submit_generation(user=user, spec=serializer.validated_data["spec"])
    except ApiError as exc:
        return openai_error(exc.status, exc.message, code=exc.code)
    finished = wait_for_terminal(generation.id, WAIT_SECONDS)
    if finished is None:
        return openai_error(504, "The images were not ready in time.", code="timeout")
    if finished.status != GenerationStatus.SUCCEEDED:
        return openai_error(
            500,
            finished.error_message or "The images could not be made.",
            code=finished.error_code or "failed",
        )
    images = list(Image.objects.filter(generation=finished).order_by("index"))
    data = [image_data(request, image, response_format) for image in images]
    return JsonResponse({"created": int(finished.created_at.timestamp()), "data": data})


def image_data(request: HttpRequest, image: Image, response_format: str) -> dict[str, Any]:
    if response_format == "b64_json":
        return {"b64_json": base64.b64encode(open_content(image.original)).decode(), "revised_prompt": None}
    return {"url": request.build_absolute_uri(signed_image_url(image)), "revised_prompt": None}


@require_GET
def models(request: HttpRequest) -> JsonResponse:
    if authenticated(request) is None:
        return openai_error(401, "Invalid or missing API key.", code="invalid_api_key")
    created = int(time.time())
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "atelier"} for name in all_models()
    ]
    return JsonResponse({"object": "list", "data": data})

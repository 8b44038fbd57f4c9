"""OpenAI-compatible image endpoints, so the official ``openai`` client works unchanged:
``POST /v1/images/generations``, ``POST /v1/images/edits`` and ``GET /v1/models``.

A translation layer over generations' services at the API edge: only an API key authenticates
here (never the session: these views are CSRF-exempt), the key the edge already looked up."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from accounts.models import User
from api.authentication import key_user
from core.errors import ApiError
from generations.models import GenerationStatus, Image
from generations.registry import all_models, default_model, get_model
from generations.serializers import GenerationCreateSerializer
from generations.services import submit_generation, upload_create
from generations.signing import signed_image_url
from generations.storage import open_content
from generations.uploads import checked_image, read_upload
from generations.waiting import wait_for_terminal

SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")
WAIT_SECONDS = 120


def openai_error(status: int, message: str, *, code: str, param: str | None = None) -> JsonResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JsonResponse(body, status=status)


@csrf_exempt
@require_POST
def images_generations(request: HttpRequest) -> JsonResponse:
    user = key_user(request)
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
    return generate_and_wait(request, user, fields, response_format)


def generate_and_wait(
    request: HttpRequest, user: User, fields: dict[str, Any], response_format: str
) -> JsonResponse:
    serializer = GenerationCreateSerializer(data=fields, context={"user": user})
    if not serializer.is_valid():
        param = next(iter(serializer.errors))
        message = f"{param}: {' '.join(str(m) for m in serializer.errors[param])}"
        mapped = {"width": "size", "height": "size", "input_image": "image", "mask_image": "mask"}
        return openai_error(400, message, code="invalid_value", param=mapped.get(param, param))
    try:
        generation = submit_generation(user=user, spec=serializer.validated_data["spec"])
    except ApiError as exc:  # 402, 429 queue_full, 503 model_unavailable: with their Retry-After
        response = openai_error(exc.status, exc.message, code=exc.code)
        for header, value in exc.headers.items():
            response[header] = value
        return response
    finished = wait_for_terminal(generation.id, WAIT_SECONDS)
    if finished is None:
        return openai_error(504, "The images were not ready in time.", code="timeout")
    if finished.status != GenerationStatus.SUCCEEDED:
        message = finished.error_message or "The images could not be made."
        return openai_error(500, message, code=finished.error_code or "failed")
    images = list(Image.objects.filter(generation=finished).order_by("index"))
    data = [image_data(request, image, response_format) for image in images]
    return JsonResponse({"created": int(finished.created_at.timestamp()), "data": data})


@csrf_exempt
@require_POST
def images_edits(request: HttpRequest) -> JsonResponse:
    """Multipart ``image`` and optional ``mask``: transparent pixels (of the mask, else of the
    image) are repainted, as in OpenAI's edits; an opaque mask may also be white-means-repaint."""
    user = key_user(request)
    if user is None:
        return openai_error(401, "Invalid or missing API key.", code="invalid_api_key")
    image_file = request.FILES.get("image") or request.FILES.get("image[]")
    if image_file is None:
        return openai_error(400, "An image file is required.", code="invalid_value", param="image")
    mask_file = request.FILES.get("mask")
    try:  # both checked before either is stored
        image_bytes = read_upload(image_file, "image")
        mask_png = edit_mask(image_bytes, read_upload(mask_file, "mask") if mask_file else None)
        source = upload_create(user=user, data=image_bytes)
        mask = upload_create(user=user, data=mask_png)
    except ApiError as exc:
        param = "mask" if "mask" in exc.details else "image"
        return openai_error(400, exc.message, code="invalid_image", param=param)
    response_format = request.POST.get("response_format") or "url"
    if response_format not in ("url", "b64_json"):
        message = "response_format must be url or b64_json."
        return openai_error(400, message, code="invalid_value", param="response_format")
    fields: dict[str, Any] = {
        "prompt": request.POST.get("prompt", ""),
        "n": request.POST.get("n", 1),
        "input_image": str(source.id),
        "mask_image": str(mask.id),
        "strength": 1.0,
    }
    if request.POST.get("model"):
        fields["model"] = request.POST["model"]
    size = request.POST.get("size")
    match = SIZE.match(size) if size else None
    if size and not match:
        return openai_error(400, "size must look like 512x512.", code="invalid_size", param="size")
    if match:
        fields["width"], fields["height"] = int(match.group(1)), int(match.group(2))
    else:
        step = model_step(fields.get("model"))
        fields["width"], fields["height"] = source.width // step * step, source.height // step * step
    return generate_and_wait(request, user, fields, response_format)


def model_step(name: str | None) -> int:
    """The size step of the named model (or the default one); 8 for a name the serializer refuses."""
    model = get_model(name) if name else default_model()
    return model.size_step if model is not None else 8


def edit_mask(image_bytes: bytes, mask_bytes: bytes | None) -> bytes:
    """A black-and-white PNG mask, white where the picture is to be repainted. Both inputs pass
    the checks of every upload before any pixel is decoded."""
    picture = checked_image(image_bytes, "image")
    if mask_bytes is not None:
        picture = checked_image(mask_bytes, "mask")
    with picture:
        if "A" in picture.getbands():
            alpha = picture.getchannel("A")
            repaint = alpha.point(lambda value: 255 if value == 0 else 0)
        elif mask_bytes is None:
            message = "Without a mask, the image needs transparent pixels to repaint."
            raise ApiError("validation_error", message, {"image": [message]})
        else:
            repaint = picture.convert("L").point(lambda value: 255 if value >= 128 else 0)
    out = io.BytesIO()
    repaint.convert("RGB").save(out, format="PNG")
    return out.getvalue()


def image_data(request: HttpRequest, image: Image, response_format: str) -> dict[str, Any]:
    if response_format == "b64_json":
        return {"b64_json": base64.b64encode(open_content(image.original)).decode(), "revised_prompt": None}
    return {"url": request.build_absolute_uri(signed_image_url(image)), "revised_prompt": None}


@require_GET
def models(request: HttpRequest) -> JsonResponse:
    if key_user(request) is None:
        return openai_error(401, "Invalid or missing API key.", code="invalid_api_key")
    created = int(time.time())
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "atelier"} for name in all_models()
    ]
    return JsonResponse({"object": "list", "data": data})

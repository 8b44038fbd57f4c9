"""ComfyUI's HTTP API (COMFYUI_API.md section 1), so unmodified ComfyUI clients work: a
translation layer over workflows' and generations' services, at the API edge.

Served at ComfyUI's paths and under ``/api/``. Only an API key authenticates (never the session:
the views are CSRF-exempt): ``Authorization: Bearer``, ``?token=`` or a base URL
``/comfy/<key>/``, the last two turned into the header before anything logs the request
(api/comfy_auth.py). Everything a user sees is their own: prompts, history, files, queue.
"""

from __future__ import annotations

import contextlib
import io
import json
import platform
from collections.abc import Callable
from functools import wraps
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from PIL import Image as PILImage
from redis.exceptions import RedisError

from accounts.models import User
from api.authentication import key_user
from api.comfy_ws import server_feature_flags
from core.errors import ApiError
from generations.models import GenerationStatus
from generations.registry import known_pools
from generations.services import cancel_generation
from generations.storage import open_content
from generations.uploads import read_upload
from generations.workers import all_heartbeats
from workflows import scope
from workflows.registry import plugin_report
from workflows.schema import object_info as node_info
from workflows.selectors import history_item, history_of, output_file, queue_of, queue_remaining, workflows_of
from workflows.services import (
    forget_history,
    input_name,
    scope_for,
    submit_workflow,
    upload_input,
    upload_mask,
    upload_named,
)
from workflows.validation import PromptInvalid

COMFYUI_VERSION = "0.3.64"
View = Callable[..., HttpResponse]


def comfy_error(status: int, kind: str, message: str) -> JsonResponse:
    body = {"error": {"type": kind, "message": message, "details": "", "extra_info": {}}, "node_errors": {}}
    return JsonResponse(body, status=status)


def with_key(view: View) -> View:
    """The API key's user as the view's second argument; 401 without one."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = key_user(request)
        if user is None:
            return comfy_error(401, "unauthorized", "An API key is required (Authorization: Bearer <key>).")
        return view(request, user, *args, **kwargs)

    return csrf_exempt(wrapped)


def json_body(request: HttpRequest) -> Any:
    try:
        return json.loads(request.body or b"{}")
    except ValueError:
        return None


@require_http_methods(["GET", "POST"])
@with_key
def prompt(request: HttpRequest, user: User) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse({"exec_info": {"queue_remaining": queue_remaining(user)}})
    body = json_body(request)
    if not isinstance(body, dict):
        return comfy_error(400, "invalid_prompt", "The body is not a JSON object.")
    if "prompt" not in body:
        return comfy_error(400, "no_prompt", "No prompt provided")
    number = body.get("number")
    try:
        submission = submit_workflow(
            user=user,
            prompt=body["prompt"],
            client_id=str(body.get("client_id") or ""),
            prompt_id=body.get("prompt_id"),
            extra_data=body.get("extra_data") if isinstance(body.get("extra_data"), dict) else {},
            number=float(number)
            if isinstance(number, (int, float)) and not isinstance(number, bool)
            else None,
            front=bool(body.get("front")),
        )
    except PromptInvalid as exc:
        return JsonResponse(exc.body, status=400)
    except ApiError as exc:  # 402 insufficient_credits, 429 queue_full, 403 ...: ComfyUI's shape
        error = {
            "type": exc.code,
            "message": exc.message,
            "details": "",
            "extra_info": {},
            **exc.body()["error"],
        }
        return JsonResponse({"error": error, "node_errors": {}}, status=exc.status)
    generation = submission.generation
    body = {
        "prompt_id": str(generation.id),
        "number": submission.number,
        "node_errors": submission.node_errors,
    }
    return JsonResponse(body)


@require_http_methods(["GET", "POST"])
@with_key
def history(request: HttpRequest, user: User) -> HttpResponse:
    if request.method == "POST":
        body = json_body(request)
        if isinstance(body, dict) and body.get("clear"):
            forget_history(user=user)
        elif isinstance(body, dict) and isinstance(body.get("delete"), list):
            forget_history(user=user, prompt_ids=[str(i) for i in body["delete"]])
        return HttpResponse(status=200)
    try:
        max_items = int(request.GET["max_items"]) if "max_items" in request.GET else None
        offset = max(0, int(request.GET.get("offset", 0)))
    except ValueError:
        return comfy_error(400, "invalid_request", "max_items and offset must be integers.")
    return JsonResponse(history_of(user, max_items=max_items, offset=offset))


@require_GET
@with_key
def history_detail(request: HttpRequest, user: User, prompt_id: str) -> HttpResponse:
    return JsonResponse(history_item(user, prompt_id))


@require_GET
@with_key
def view(request: HttpRequest, user: User) -> HttpResponse:
    filename = request.GET.get("filename", "")
    subfolder = request.GET.get("subfolder", "")
    kind = request.GET.get("type", "output")
    for suffix in ("[output]", "[input]", "[temp]"):
        if filename.endswith(suffix):
            filename, kind = filename.removesuffix(suffix).rstrip(), suffix[1:-1]
    if not filename or "/" in filename or "\\" in filename or filename.startswith(".") or "\x00" in filename:
        return comfy_error(400, "invalid_filename", "Bad filename.")
    parts = subfolder.replace("\\", "/").split("/")
    if subfolder.startswith(("/", "\\")) or ".." in parts or ":" in subfolder:
        return comfy_error(403, "forbidden", "The subfolder must stay inside your files.")
    if kind == "input":
        upload = upload_named(user, filename)
        path = upload.file if upload is not None and not subfolder else None
    elif kind in ("output", "temp"):
        path = output_file(user, filename=filename, subfolder=subfolder, kind=kind)
    else:
        return comfy_error(400, "invalid_type", "type must be output, input or temp.")
    if path is None:
        return comfy_error(404, "not_found", "No such file.")
    try:
        content, content_type = rendition(
            open_content(path), request.GET.get("preview", ""), request.GET.get("channel", "")
        )
    except ValueError as exc:
        return comfy_error(400, "invalid_request", str(exc))
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'filename="{filename}"'
    response["Cache-Control"] = "private, max-age=3600"
    return response


def rendition(png: bytes, preview: str, channel: str) -> tuple[bytes, str]:
    """The file as stored, or ``preview=webp;90`` / ``jpeg;85``, or one ``channel`` (rgb, a)."""
    if not preview and channel in ("", "rgba"):
        return png, "image/png"
    picture: PILImage.Image = PILImage.open(io.BytesIO(png))
    if channel == "rgb":
        picture = picture.convert("RGB")
    elif channel == "a":
        picture = (
            picture.getchannel("A") if "A" in picture.getbands() else PILImage.new("L", picture.size, 255)
        )
    elif channel not in ("", "rgba"):
        raise ValueError("channel must be rgba, rgb or a.")
    out = io.BytesIO()
    if preview:
        kind, _, quality = preview.partition(";")
        formats = {
            "webp": ("WEBP", "image/webp"),
            "jpeg": ("JPEG", "image/jpeg"),
            "jpg": ("JPEG", "image/jpeg"),
        }
        if kind.lower() not in formats or (quality and not quality.isdigit()):
            raise ValueError("preview must look like webp;90 or jpeg;85.")
        image_format, content_type = formats[kind.lower()]
        if image_format == "JPEG" and picture.mode not in ("RGB", "L"):
            picture = picture.convert("RGB")
        picture.save(out, image_format, quality=min(int(quality or 90), 100))
        return out.getvalue(), content_type
    picture.save(out, "PNG")
    return out.getvalue(), "image/png"


def uploaded(request: HttpRequest, user: User, *, mask: bool) -> HttpResponse:
    file = request.FILES.get("image")
    if file is None:
        return comfy_error(400, "invalid_request", "An image file is required.")
    try:
        if mask:
            reference = json.loads(request.POST.get("original_ref") or "{}")
            original = reference.get("filename", "") if isinstance(reference, dict) else ""
            upload = upload_mask(user=user, data=read_upload(file, "image"), original=original)
        else:
            upload = upload_input(user=user, data=read_upload(file, "image"))
    except ValueError:
        return comfy_error(400, "invalid_request", "original_ref must be JSON.")
    except ApiError as exc:
        return comfy_error(exc.status, exc.code, exc.message)
    return JsonResponse({"name": input_name(upload), "subfolder": "", "type": "input"})


@require_POST
@with_key
def upload_image(request: HttpRequest, user: User) -> HttpResponse:
    return uploaded(request, user, mask=False)


@require_POST
@with_key
def upload_mask_view(request: HttpRequest, user: User) -> HttpResponse:
    return uploaded(request, user, mask=True)


@require_GET
@with_key
def object_info(request: HttpRequest, user: User, node_class: str | None = None) -> HttpResponse:
    with scope.using(scope_for(user)):
        return JsonResponse(node_info(node_class))


@require_http_methods(["GET", "POST"])
@with_key
def queue(request: HttpRequest, user: User) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse(queue_of(user))
    body = json_body(request)
    if not isinstance(body, dict):
        return comfy_error(400, "invalid_request", "The body is not a JSON object.")
    waiting = workflows_of(user).filter(status__in=(GenerationStatus.PENDING, GenerationStatus.QUEUED))
    if body.get("clear"):
        chosen = list(waiting)
    else:
        ids = [str(i) for i in body.get("delete", []) if isinstance(i, str)]
        chosen = [g for g in waiting if str(g.id) in ids]
    for generation in chosen:
        cancel_quietly(generation)
    return HttpResponse(status=200)


@require_POST
@with_key
def interrupt(request: HttpRequest, user: User) -> HttpResponse:
    body = json_body(request)
    running = list(workflows_of(user).filter(status=GenerationStatus.RUNNING))
    if isinstance(body, dict) and body.get("prompt_id"):  # else all of one's own (never others')
        running = [g for g in running if str(g.pk) == str(body["prompt_id"])]
    for generation in running:
        cancel_quietly(generation)
    return HttpResponse(status=200)


def cancel_quietly(generation: Any) -> None:
    with contextlib.suppress(ApiError):  # it finished meanwhile
        cancel_generation(generation=generation)


@require_POST
@with_key
def free(request: HttpRequest, user: User) -> HttpResponse:
    return HttpResponse(status=200)  # the workers manage their own memory


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return ""


@require_GET
@with_key
def system_stats(request: HttpRequest, user: User) -> HttpResponse:
    pools = known_pools()
    devices = [
        {
            "name": f"pool {pool}",
            "type": "pool",
            "index": index,
            "vram_total": 0,
            "vram_free": 0,
            "torch_vram_total": 0,
            "torch_vram_free": 0,
        }
        for index, pool in enumerate(pools)
    ]
    system = {
        "os": platform.system().lower(),
        "ram_total": 0,
        "ram_free": 0,
        "comfyui_version": COMFYUI_VERSION,
        "python_version": platform.python_version(),
        "pytorch_version": package_version("torch"),
        "embedded_python": False,
        "argv": [],
        "node_plugins": node_plugins(),
    }
    return JsonResponse({"system": system, "devices": devices})


def node_plugins() -> dict[str, Any]:
    """The node plugins this server lists, and those skipped here or by a live worker (names and
    reasons only: nothing about other users)."""
    report = plugin_report()
    broken = dict(report["broken"])
    beats: list[tuple[str, dict[str, Any]]] = []
    with contextlib.suppress(RedisError):  # the workers' reports are a bonus; Redis may be away
        beats = all_heartbeats()
    for _, state in beats:
        broken.update((state.get("node_plugins") or {}).get("broken") or {})
    return {"loaded": sorted(report["loaded"]), "broken": broken}


@require_GET
@with_key
def models(request: HttpRequest, user: User, folder: str | None = None) -> HttpResponse:
    found = scope_for(user)
    available = {"checkpoints": list(found.checkpoints), "loras": list(found.loras)}
    if folder is None:
        return JsonResponse(list(available), safe=False)
    if folder not in available:
        return comfy_error(404, "not_found", "No such model folder.")
    return JsonResponse(available[folder], safe=False)


@require_GET
@with_key
def embeddings(request: HttpRequest, user: User) -> HttpResponse:
    return JsonResponse([], safe=False)


@require_GET
@with_key
def extensions(request: HttpRequest, user: User) -> HttpResponse:
    return JsonResponse([], safe=False)


@require_GET
@with_key
def features(request: HttpRequest, user: User) -> HttpResponse:
    return JsonResponse(server_feature_flags())

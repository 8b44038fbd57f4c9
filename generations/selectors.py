from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import connection
from django.db.models import Model, Q, QuerySet
from django.urls import reverse

from accounts.models import User
from billing.credits import format_credits
from core import sql
from core.events import iso
from generations.events import progress_fraction
from generations.models import (
    ACTIVE_STATUSES,
    EXPLORE_VISIBLE,
    Generation,
    GenerationStatus,
    Image,
    InstalledModel,
    Upload,
)
from generations.positions import eta_seconds, queue_position
from generations.registry import all_models
from generations.workers import WAITING_FOR_WORKER, model_holders, waiting_for_worker

M = TypeVar("M", bound=Model)


def generations_of(user: User) -> QuerySet[Generation]:
    return Generation.objects.filter(user=user).prefetch_related("images")


def _one_or_none(queryset: QuerySet[M], pk: Any) -> M | None:
    """The row with this primary key, or None for a missing row or a malformed id alike."""
    try:
        return queryset.get(pk=pk)
    except (ObjectDoesNotExist, ValueError, TypeError, ValidationError):
        return None


def db_uuid(model: type[Model], value: Any) -> Any | None:
    """``value`` as ``model``'s UUID primary key in the database's form; None when it is no UUID."""
    try:
        return model._meta.pk.get_db_prep_value(uuid.UUID(str(value)), connection)
    except (ValueError, TypeError, AttributeError):
        return None


def generation_of(user: User, generation_id: Any) -> Generation | None:
    """The user's own generation, or None: others' generations are indistinguishable from missing.
    With its live images loaded when it succeeded (what its resource lists). Every poll of a
    generation runs this: SQL rather than the ORM (core/sql.py says why)."""
    pk = db_uuid(Generation, generation_id)
    if pk is None:
        return None
    row = sql.fetch_one(owned_generation_sql(), [pk, user.pk])
    if row is None:
        return None
    generation = sql.instance(Generation, row)
    if generation.status == GenerationStatus.SUCCEEDED:
        generation.loaded_images = [sql.instance(Image, r) for r in sql.fetch_all(live_images_sql(), [pk])]
    return generation


@cache
def owned_generation_sql() -> str:
    table = sql.table(Generation)
    return f"SELECT {sql.columns(Generation)} FROM {table} WHERE {table}.id = %s AND {table}.user_id = %s"  # noqa: S608


@cache
def live_images_sql() -> str:
    table = sql.table(Image)
    return (
        f"SELECT {sql.columns(Image)} FROM {table} "  # noqa: S608 (names from the models)
        f"WHERE {table}.generation_id = %s AND {table}.deleted_at IS NULL "
        f"ORDER BY {table}.{connection.ops.quote_name('index')}"
    )


def active_generations_of(user: User) -> list[Generation]:
    return list(generations_of(user).filter(status__in=ACTIVE_STATUSES).order_by("created_at"))


def image_of(user: User, image_id: Any) -> Image | None:
    return _one_or_none(Image.objects.select_related("generation").filter(generation__user=user), image_id)


def upload_of(user: User, upload_id: Any) -> Upload | None:
    return _one_or_none(Upload.objects.filter(user=user), upload_id)


PLACEHOLDER_ID = str(uuid.UUID(int=0))


def image_url_templates() -> tuple[str, str]:
    """An image's content and thumbnail URLs with a placeholder id: a batch of resources
    (`image_resource(..., templates=...)`) reverses them once, not twice per image."""
    return (
        reverse("api_image_content", args=[PLACEHOLDER_ID]),
        reverse("api_image_thumbnail", args=[PLACEHOLDER_ID]),
    )


def image_resource(image: Image, *, templates: tuple[str, str] | None = None) -> dict[str, Any]:
    content, thumbnail = templates or image_url_templates()
    content, thumbnail = (url.replace(PLACEHOLDER_ID, str(image.id)) for url in (content, thumbnail))
    return {
        "id": str(image.id),
        "url": content,
        "thumbnail_url": thumbnail,
        "thumbnails": thumbnails(image, url=thumbnail),
        "width": image.width,
        "height": image.height,
        "seed": image.seed,
    }


def thumbnail_sizes(image: Image) -> list[int]:
    """The longest sides of the image's WebP thumbnails, smallest first."""
    return [settings.ATELIER_THUMBNAIL_SIZES[0], *(image.thumbnail_sizes or [])]


def thumbnails(image: Image, *, url: str | None = None) -> list[dict[str, Any]]:
    """Each thumbnail's size (its longest side), pixel width and height, and URL (``url``: the
    first's, when the caller has it): what a page puts in `srcset`, so that a phone loads the
    small one."""
    url = url or reverse("api_image_thumbnail", args=[image.id])
    longest = max(image.width, image.height)
    sizes = []
    for index, size in enumerate(thumbnail_sizes(image)):
        scale = min(1.0, size / longest)
        sizes.append(
            {
                "size": size,
                "width": max(1, round(image.width * scale)),
                "height": max(1, round(image.height * scale)),
                "url": url if index == 0 else f"{url}?size={size}",
            }
        )
    return sizes


def generation_resource(generation: Generation, *, position: int | None = None) -> dict[str, Any]:
    if position is None:
        position = queue_position(generation)
    error = None
    if generation.error_code:
        error = {"code": generation.error_code, "message": generation.error_message}
    return {
        "id": str(generation.id),
        "object": "generation",
        "status": generation.status,
        "kind": generation.kind,
        "model": generation.model_name,
        "prompt": generation.prompt,
        "negative_prompt": generation.negative_prompt,
        "width": generation.width,
        "height": generation.height,
        "steps": generation.steps,
        "guidance": generation.guidance,
        "sampler": generation.sampler,
        "seed": generation.seed,
        "n": generation.n,
        "input_image": str(generation.input_upload_id) if generation.input_upload_id else None,
        "mask_image": str(generation.mask_upload_id) if generation.mask_upload_id else None,
        "strength": generation.strength,
        "lane": generation.lane,
        "mode": "relax" if generation.relax else "fast",
        "credits": format_credits(generation.credits_held),
        "queue_position": position,
        "eta_seconds": eta_seconds(generation, position),
        "progress": progress_fraction(generation),
        "step": generation.step,
        "total_steps": generation.total_steps or generation.steps,
        "images": [image_resource(image) for image in live_images(generation)]
        if generation.status == GenerationStatus.SUCCEEDED
        else [],
        "error": error,
        "waiting_reason": WAITING_FOR_WORKER
        if generation.status == GenerationStatus.QUEUED and waiting_for_worker(generation.pool)
        else None,
        "cached": generation.cached,
        "preemptions": generation.preemptions,
        "fallback_from": generation.fallback_from or None,
        "created_at": iso(generation.created_at),
        "started_at": iso(generation.started_at),
        "finished_at": iso(generation.finished_at),
        "url": reverse("api_generation_detail", args=[generation.id]),
    }


def live_images(generation: Generation) -> list[Image]:
    """Its live images: those read with it, or else from its (maybe prefetched) relation."""
    if generation.loaded_images is not None:
        return generation.loaded_images
    return list(generation.images.all())


def viewable_image(user: User | None, image_id: Any, *, related: bool = True) -> Image | None:
    """The user's own image, or anyone's visible one; ``related``: with its generation and owner
    loaded. Serving the file needs neither, and every image fetched runs it: without them, SQL
    rather than the ORM (core/sql.py says why)."""
    if not related:
        pk = db_uuid(Image, image_id)
        if pk is None:
            return None
        row = sql.fetch_one(viewable_image_sql(), [pk, user.pk if user is not None else None])
        return sql.instance(Image, row) if row is not None else None
    condition = EXPLORE_VISIBLE
    if user is not None:
        condition = condition | Q(generation__user=user)
    images = Image.objects.filter(condition)
    if related:
        images = images.select_related("generation", "generation__user")
    return _one_or_none(images, image_id)


@cache
def viewable_image_sql() -> str:
    """A live image by id, if it is visible in Explore (as EXPLORE_VISIBLE says) or its generation
    is the user's (NULL for no user: no generation matches)."""
    images, generations = sql.table(Image), sql.table(Generation)
    return (
        f"SELECT {sql.columns(Image)} FROM {images} "  # noqa: S608 (names from the models)
        f"INNER JOIN {generations} ON {generations}.id = {images}.generation_id "
        f"WHERE {images}.id = %s AND {images}.deleted_at IS NULL "
        f"AND (({images}.is_public AND NOT {images}.hidden) OR {generations}.user_id = %s)"
    )


def prefill(image: Image) -> dict[str, Any]:
    """What the Create form needs to remix an image."""
    generation = image.generation
    return {
        "object": "prefill",
        "remix_of": str(image.id),
        "prompt": generation.prompt,
        "negative_prompt": generation.negative_prompt,
        "model": generation.model_name,
        "seed": image.seed,
        "width": generation.width,
        "height": generation.height,
        "steps": generation.steps,
        "guidance": generation.guidance,
        "sampler": generation.sampler,
    }


@dataclass(frozen=True)
class ModelRow:
    name: str
    pool: str
    family: str
    size_bytes: int | None  # None: not readable here (the weights are on the workers' machines)
    origin: str  # "ATELIER_MODELS", "built-in" or where `models add` took it from
    held_by: list[str]


def model_rows() -> list[ModelRow]:
    """Every model, configured or installed, with who holds it now (the admin and `models list`)."""
    installed = {row.name: row for row in InstalledModel.objects.all()}
    holders = model_holders()
    rows = []
    for name, spec in sorted(all_models().items()):
        row = installed.get(name)
        if row is not None and name not in settings.ATELIER_MODELS:
            size: int | None = row.size_bytes
            origin = row.source
        else:
            size = weights_size(Path(spec.path))
            origin = "built-in" if spec.builtin else "ATELIER_MODELS"
        held = holders.get(spec.path, [])
        rows.append(ModelRow(name, spec.pool, spec.family, size, origin, held))
    return rows


def weights_size(path: Path) -> int | None:
    try:
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        pass
    return None

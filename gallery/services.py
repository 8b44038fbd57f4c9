"""Writes: image actions (upscale, vary, inpaint), publishing, likes, reports, deletion."""

from __future__ import annotations

import io
import math
from dataclasses import replace

from django.db import IntegrityError, transaction
from django.db.models import F
from PIL import Image as PILImage

from accounts.models import User
from billing.credits import account_for, effective_plan
from core.errors import ApiError
from gallery.models import Like, Report, ReportStatus
from gallery.moderation import is_suspended
from generations.models import Generation, GenerationAction, Image, Upload, hot_score
from generations.registry import get_model
from generations.samplers import DEFAULT_SAMPLER, samplers_for
from generations.services import GenerationSpec, submit_generation
from generations.storage import delete_content, save_content, sync_visibility
from generations.uploads import clean_image

UPSCALE_FACTOR = 2
# "Hires fix": enough denoising to add detail at the new size, little enough to keep the picture.
UPSCALE_STRENGTH = 0.35
VARY_STRENGTHS = {"subtle": 0.35, "strong": 0.75}
MASK_FORMATS = ("PNG", "WEBP")


def source_upload(image: Image) -> Upload:
    """The image as an img2img input. Files are content-addressed, so the input row points at the
    image's own PNG: the worker reads it like any upload and nothing is copied."""
    upload = Upload.objects.filter(user_id=image.generation.user_id, sha256=image.sha256).first()
    if upload is None:
        upload = Upload.objects.create(
            user_id=image.generation.user_id,
            file=image.original,
            width=image.width,
            height=image.height,
            sha256=image.sha256,
        )
    return upload


def spec_from(image: Image, **changes: object) -> GenerationSpec:
    """A one-image spec with the parent's settings, its visibility, and the changes."""
    generation = image.generation
    model = get_model(generation.model_name)
    if model is None:
        raise ApiError("validation_error", "The image's model is no longer available.", {"model": ["gone"]})
    spec = GenerationSpec(
        model=model.name,
        pool=model.pool,
        prompt=generation.prompt,
        negative_prompt=generation.negative_prompt,
        width=image.width,
        height=image.height,
        steps=generation.steps,
        guidance=generation.guidance,
        # The parent's sampler, while its model still supports it.
        sampler=generation.sampler if generation.sampler in samplers_for(model.family) else DEFAULT_SAMPLER,
        seed=None,
        n=1,
        relax=generation.relax,
        # A published parent makes a published child; a private one follows the plan's default.
        private=False if image.is_public else None,
        parent=image,
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


def steps_for(strength: float, steps: int) -> int:
    """Enough steps that img2img runs at least two denoising steps at this strength."""
    return max(steps, math.ceil(2 / strength))


def refuse_if_hidden(image: Image) -> None:
    """Staff hid it: no near-copy of it may be made (one could come back published)."""
    if image.hidden:
        message = "This image was hidden by moderation: it cannot be upscaled, varied or inpainted."
        raise ApiError("permission_denied", message)


def upscale_image(*, user: User, image: Image) -> Generation:
    refuse_if_hidden(image)
    model = get_model(image.generation.model_name)
    width, height = image.width * UPSCALE_FACTOR, image.height * UPSCALE_FACTOR
    if model is not None and max(width, height) > model.max_side:
        message = (
            f"Upscaled to {width}x{height} the image would exceed {model.name}'s "
            f"largest side ({model.max_side})."
        )
        raise ApiError(
            "image_too_large", message, {"width": width, "height": height, "max_side": model.max_side}
        )
    spec = spec_from(
        image,
        width=width,
        height=height,
        seed=image.seed,
        steps=steps_for(UPSCALE_STRENGTH, image.generation.steps),
        input_upload=source_upload(image),
        strength=UPSCALE_STRENGTH,
        action=GenerationAction.UPSCALE,
    )
    return submit_generation(user=user, spec=spec)


def vary_image(*, user: User, image: Image, strength: str) -> Generation:
    refuse_if_hidden(image)
    value = VARY_STRENGTHS[strength]
    action = GenerationAction.VARY_SUBTLE if strength == "subtle" else GenerationAction.VARY_STRONG
    spec = spec_from(
        image,
        steps=steps_for(value, image.generation.steps),
        input_upload=source_upload(image),
        strength=value,
        action=action,
    )
    return submit_generation(user=user, spec=spec)


def mask_error(message: str) -> ApiError:
    return ApiError("validation_error", f"Invalid field(s): mask. {message}", {"mask": [message]})


def mask_upload(*, user: User, image: Image, data: bytes) -> Upload:
    """A mask (white repaints, black keeps) of exactly the image's size, PNG or WebP."""
    try:
        header = PILImage.open(io.BytesIO(data))
        fmt, size = header.format, header.size
    except Exception:
        raise mask_error("The mask is not a readable image.") from None
    if fmt not in MASK_FORMATS:
        raise mask_error(f"The mask must be PNG or WebP, not {fmt}.")
    if size != (image.width, image.height):
        raise mask_error(
            f"The mask must be the image's size ({image.width}x{image.height}), not {size[0]}x{size[1]}."
        )
    try:
        png, width, height = clean_image(data)
    except ApiError as exc:
        raise mask_error(exc.details.get("file", [exc.message])[0]) from None
    path, digest = save_content("uploads", png, "png")
    return Upload.objects.create(user=user, file=path, width=width, height=height, sha256=digest)


def inpaint_image(
    *, user: User, image: Image, mask: bytes, prompt: str, negative_prompt: str | None = None
) -> Generation:
    refuse_if_hidden(image)
    mask_input = mask_upload(user=user, image=image, data=mask)
    spec = spec_from(
        image,
        prompt=prompt,
        negative_prompt=image.generation.negative_prompt if negative_prompt is None else negative_prompt,
        input_upload=source_upload(image),
        mask_upload=mask_input,
        strength=1.0,
        action=GenerationAction.INPAINT,
    )
    return submit_generation(user=user, spec=spec)


def refuse_if_suspended(user: User) -> None:
    if is_suspended(user):
        raise ApiError("account_suspended", "Your account is suspended: it cannot publish, like or report.")


def set_published(*, image: Image, public: bool, user: User | None = None) -> Image:
    """Publish or unpublish. ``user``, the member asking (None: staff, scripts), must not be
    suspended to publish, and needs a plan with private mode to take an image private."""
    if user is not None and public:
        refuse_if_suspended(user)
    if user is not None and not public:
        plan = effective_plan(account_for(user))
        if not plan.private_allowed:
            message = f"Your plan ({plan.name}) does not include private mode: its images stay published."
            raise ApiError("private_not_allowed", message)
    Image.objects.filter(pk=image.pk).update(is_public=public)
    image.is_public = public
    sync_visibility([image])
    return image


def like_image(*, user: User, image: Image) -> Image:
    refuse_if_suspended(user)
    with transaction.atomic():
        locked = Image.objects.select_for_update().get(pk=image.pk)
        try:
            with transaction.atomic():
                Like.objects.create(user=user, image=locked)
        except IntegrityError:
            return locked  # liked already: nothing changes
        return _count_likes(locked, +1)


def unlike_image(*, user: User, image: Image) -> Image:
    with transaction.atomic():
        locked = Image.objects.select_for_update().get(pk=image.pk)
        deleted, _ = Like.objects.filter(user=user, image=locked).delete()
        return _count_likes(locked, -1) if deleted else locked


def _count_likes(image: Image, change: int) -> Image:
    Image.objects.filter(pk=image.pk).update(like_count=F("like_count") + change)
    image.refresh_from_db(fields=["like_count"])
    image.hot_score = hot_score(image.like_count, image.created_at)
    image.save(update_fields=["hot_score"])
    return image


def report_image(*, user: User, image: Image, reason: str, details: str = "") -> Report:
    """One open report per member and image: reporting again updates it."""
    refuse_if_suspended(user)
    report, _ = Report.objects.update_or_create(
        reporter=user,
        image=image,
        status=ReportStatus.OPEN,
        defaults={"reason": reason, "details": details},
    )
    return report


def delete_image(*, image: Image) -> None:
    """Delete the image; its files go too unless another row still points at them (content
    addressing shares files, and an upscale in flight reads the original). The files go once the
    deletion is committed: a transaction around it that rolls back keeps a row whose files exist."""
    original, thumbnail = image.original, image.thumbnail
    with transaction.atomic():
        image.delete()
        transaction.on_commit(lambda: delete_unused_files(original, thumbnail))


def delete_unused_files(original: str, thumbnail: str) -> None:
    if (
        not Image.objects.filter(original=original).exists()
        and not Upload.objects.filter(file=original).exists()
    ):
        delete_content(original)
    if not Image.objects.filter(thumbnail=thumbnail).exists():
        delete_content(thumbnail)

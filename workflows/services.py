"""Submitting a workflow: the graph validated and priced against what its owner may use, then
handed to `generations.services.submit_generation` as a generation of kind ``workflow``; and the
input images that LoadImage reads (uploads, and masks painted into a copy of one)."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from PIL import Image as PILImage

from accounts.models import User
from billing.credits import account_for, effective_plan
from core.errors import ApiError
from generations.loras import available_loras
from generations.models import ACTIVE_STATUSES, Generation, Upload
from generations.ordering import put_first
from generations.registry import all_models, default_model, get_model
from generations.samplers import DEFAULT_SAMPLER
from generations.selectors import upload_of
from generations.services import GenerationSpec, SamplingWork, submit_generation, upload_create
from generations.storage import open_content, save_content
from generations.uploads import clean_image
from workflows import scope
from workflows.pricing import plan_work
from workflows.validation import PromptInvalid, ValidPrompt, is_link, validate_prompt

# Families whose denoiser the sampling nodes can drive (a UNet on a discrete noise schedule).
WORKFLOW_FAMILIES = ("sd15", "sd2", "sdxl", "sdxl-turbo")
INPUT_SUFFIX = ".png"


def input_name(upload: Upload) -> str:
    """The name LoadImage and ``/view?type=input`` know an upload by."""
    return f"{upload.id}{INPUT_SUFFIX}"


def upload_named(user: User, name: str) -> Upload | None:
    stem = name.removesuffix(INPUT_SUFFIX)
    try:
        return upload_of(user, uuid.UUID(stem)) if name.endswith(INPUT_SUFFIX) else None
    except ValueError:
        return None


def scope_for(user: User | None) -> scope.Scope:
    """The checkpoints the user's plan includes, their limits, and the user's input images."""
    plan = effective_plan(account_for(user)) if user is not None else None
    models = [
        spec
        for spec in all_models().values()
        if spec.family in WORKFLOW_FAMILIES and (plan is None or plan.allows_pool(spec.pool))
    ]
    files: dict[str, tuple[int, int]] = {}
    if user is not None:
        recent = Upload.objects.filter(user=user).order_by("-created_at")[
            : settings.ATELIER_WORKFLOW_MAX_INPUTS
        ]
        files = {input_name(upload): (upload.width, upload.height) for upload in recent}
    batch = settings.ATELIER_WORKFLOW_MAX_BATCH
    return scope.Scope(
        checkpoints=tuple(spec.name for spec in models),
        loras=tuple(available_loras()),
        input_files=files,
        limits={s.name: (s.min_side, s.max_side, batch, s.max_steps) for s in models},
        max_nodes=settings.ATELIER_WORKFLOW_MAX_NODES,
    )


@dataclass(frozen=True)
class Submission:
    generation: Generation
    number: int
    node_errors: dict[str, Any]


def texts_into(valid: ValidPrompt, input_name_: str) -> list[str]:
    """The text widgets that reach the sampling nodes' ``positive`` (or ``negative``) input."""
    texts = []
    for node in valid.prompt.values():
        link = node["inputs"].get(input_name_)
        if node["class_type"].startswith("KSampler") and is_link(link):
            source = valid.prompt.get(str(link[0]), {}).get("inputs", {})
            if isinstance(source.get("text"), str):
                texts.append(source["text"])
    return texts


def submit_workflow(
    *,
    user: User,
    prompt: Any,
    client_id: str = "",
    prompt_id: str | None = None,
    extra_data: dict[str, Any] | None = None,
    number: float | None = None,
    front: bool = False,
) -> Submission:
    """Validate, price and queue the graph; raises `PromptInvalid` (nothing stored or held) or
    ``ApiError`` (402 when the credits fall short, 429 past the caps, ...). ``front`` puts it
    ahead of the user's own waiting prompts (never anyone else's: generations/ordering.py), with
    a number below theirs, as ComfyUI's negative one sorts first."""
    generation_id = None
    if prompt_id is not None:
        try:
            generation_id = uuid.UUID(prompt_id)
        except (ValueError, AttributeError, TypeError):
            generation_id = None
        if generation_id is None or str(generation_id) != prompt_id:
            raise PromptInvalid("invalid_prompt_id", "prompt_id must be a lowercase UUID.", str(prompt_id))
        if Generation.objects.filter(pk=generation_id).exists():
            raise PromptInvalid(
                "invalid_prompt_id", "A prompt with this prompt_id was already queued.", prompt_id
            )
    with scope.using(scope_for(user)):
        valid = validate_prompt(prompt)
        work = plan_work(valid)
    model = get_model(work[0].checkpoint) if work else None
    model = model or default_model()
    first = valid.prompt[work[0].node_id]["inputs"] if work else {}
    if number is None:
        number = Generation.objects.filter(user=user).count()
    if front:
        waiting = Generation.objects.filter(user=user, kind="workflow", status__in=ACTIVE_STATUSES)
        number = (
            min([number, *(float(w.get("number", 0)) for w in waiting.values_list("workflow", flat=True))])
            - 1
        )
    positive, negative = texts_into(valid, "positive"), texts_into(valid, "negative")
    spec = GenerationSpec(
        model=model.name,
        pool=model.pool,
        prompt="\n".join(positive)[: settings.ATELIER_PROMPT_MAX_CHARS],
        negative_prompt="\n".join(negative)[: settings.ATELIER_PROMPT_MAX_CHARS],
        width=work[0].width if work else model.default_side,
        height=work[0].height if work else model.default_side,
        steps=sum(w.steps for w in work) or 1,
        guidance=float(first.get("cfg", model.default_guidance)),
        seed=int(first.get("seed", first.get("noise_seed", 0))) % 2**63,
        n=1,
        sampler=DEFAULT_SAMPLER,
        workflow={
            "prompt": valid.prompt,
            "outputs_to_execute": valid.outputs,
            "client_id": client_id,
            "number": number,
            "extra_data": extra_data or {},
        },
        sampling=tuple(
            SamplingWork(w.width, w.height, w.steps, w.batch, multiplier_of(w.checkpoint)) for w in work
        ),
        generation_id=generation_id,
    )
    generation = submit_generation(user=user, spec=spec)
    if front:  # once the row is committed and enqueued
        transaction.on_commit(lambda: put_first(generation))
    return Submission(generation=generation, number=int(number), node_errors=valid.node_errors)


def multiplier_of(checkpoint: str) -> float:
    spec = get_model(checkpoint)
    return spec.cost_multiplier if spec else 1.0


def upload_input(*, user: User, data: bytes) -> Upload:
    return upload_create(user=user, data=data)


def upload_mask(*, user: User, data: bytes, original: str) -> Upload:
    """ComfyUI's mask upload: the mask's alpha written into a copy of the original input image."""
    source = upload_named(user, original)
    if source is None:
        raise ApiError("not_found", "The original image is not one of your inputs.")
    clean_image(data)  # the same checks as any upload (size, format, bombs)
    with PILImage.open(io.BytesIO(data)) as mask:
        alpha = mask.getchannel("A") if "A" in mask.getbands() else mask.convert("L")
        alpha = alpha.resize((source.width, source.height))
    picture = PILImage.open(io.BytesIO(open_content(source.file))).convert("RGBA")
    picture.putalpha(alpha)
    out = io.BytesIO()
    picture.save(out, format="PNG")
    path, digest = save_content("uploads", out.getvalue(), "png")
    return Upload.objects.create(
        user=user, file=path, width=source.width, height=source.height, sha256=digest
    )


def forget_history(*, user: User, prompt_ids: list[str] | None = None) -> int:
    """``POST /history``: leave finished workflows out of the history (all of them without ids);
    their images stay in My images."""
    done = Generation.objects.filter(user=user, kind="workflow").exclude(status__in=ACTIVE_STATUSES)
    if prompt_ids is not None:
        keys = []
        for value in prompt_ids:
            try:
                keys.append(uuid.UUID(str(value)))
            except ValueError:
                continue
        done = done.filter(pk__in=keys)
    forgotten = 0
    for generation in done:
        if not generation.workflow.get("history_deleted"):
            workflow = {**generation.workflow, "history_deleted": True}
            forgotten += Generation.objects.filter(pk=generation.pk).update(workflow=workflow)
    return forgotten

"""Writes: submitting generations (creating their rows), canceling them, storing uploads.

Creating a row gives it its first status (pending or queued, from `caps.admission`); every later
change of status is `generations.lifecycle`'s.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from accounts.models import User
from billing.credits import (
    Cost,
    InsufficientCredits,
    account_for,
    effective_plan,
    format_credits,
    generation_cost,
    hold_credits,
)
from billing.models import BillingAccount
from core import sql
from core.context import request_id
from core.errors import ApiError
from generations import events, lifecycle, queues
from generations.caps import admission, lock_account
from generations.extensions import check_submission
from generations.loras import LoraRequest
from generations.models import Generation, GenerationKind, GenerationStatus, Image, Upload
from generations.registry import get_model
from generations.samplers import DEFAULT_SAMPLER
from generations.storage import save_content
from generations.uploads import clean_image
from webhooks.models import WebhookEndpoint


@dataclass(frozen=True)
class SamplingWork:
    """One sampling node of a workflow, as it is priced: pixels x steps x batch x multiplier."""

    width: int
    height: int
    steps: int
    batch: int
    multiplier: float = 1.0


@dataclass(frozen=True)
class GenerationSpec:
    model: str
    pool: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int | None
    n: int
    input_upload: Upload | None = None
    mask_upload: Upload | None = None
    strength: float | None = None
    sampler: str = DEFAULT_SAMPLER
    loras: tuple[LoraRequest, ...] = ()
    relax: bool = False
    webhook: WebhookEndpoint | None = None
    webhook_events: tuple[str, ...] = ()
    # None: the plan's default (private where the plan has private mode, public otherwise).
    private: bool | None = None
    parent: Image | None = None
    action: str = ""
    # A workflow (kind "workflow"): its graph and ComfyUI fields, and its sampling work, which
    # prices it as one unit (captured whole when it succeeds).
    workflow: dict[str, Any] | None = None
    sampling: tuple[SamplingWork, ...] = ()
    generation_id: uuid.UUID | None = None  # chosen by the client (ComfyUI's prompt_id)


@dataclass(frozen=True)
class Quote:
    cost: Cost
    lane: str
    account: BillingAccount


def quote_generation(*, user: User, spec: GenerationSpec, account: BillingAccount | None = None) -> Quote:
    """What a submission would cost and where it would run, with the plan's permissions checked."""
    account = account or account_for(user)
    plan = effective_plan(account)
    if not plan.allows_pool(spec.pool):
        raise ApiError("model_not_in_plan", f"Your plan ({plan.name}) does not include {spec.model}.")
    if spec.relax and not plan.relax_allowed:
        raise ApiError("relax_not_allowed", f"Your plan ({plan.name}) does not include relax mode.")
    if spec.private and not plan.private_allowed:
        raise ApiError("private_not_allowed", f"Your plan ({plan.name}) does not include private mode.")
    model = get_model(spec.model)
    if spec.workflow is not None:
        return Quote(cost=workflow_cost(spec), lane="relax" if spec.relax else plan.lane, account=account)
    cost = generation_cost(
        width=spec.width,
        height=spec.height,
        steps=spec.steps,
        n=spec.n,
        multiplier=model.cost_multiplier if model else 1.0,
        relax=spec.relax,
    )
    return Quote(cost=cost, lane="relax" if spec.relax else plan.lane, account=account)


def workflow_cost(spec: GenerationSpec) -> Cost:
    total = sum(
        generation_cost(
            width=work.width,
            height=work.height,
            steps=work.steps,
            n=work.batch,
            multiplier=work.multiplier,
            relax=spec.relax,
        ).total
        for work in spec.sampling
    )
    return Cost(total, total)


def kind_of(spec: GenerationSpec) -> str:
    if spec.workflow is not None:
        return GenerationKind.WORKFLOW
    if spec.mask_upload is not None:
        return GenerationKind.INPAINT
    return GenerationKind.IMG2IMG if spec.input_upload else GenerationKind.TXT2IMG


def submit_generation(*, user: User, spec: GenerationSpec) -> Generation:
    check_submission(user=user, prompt=spec.prompt, negative_prompt=spec.negative_prompt)
    seed = spec.seed if spec.seed is not None else secrets.randbelow(2**32)
    with transaction.atomic():
        account = lock_account(user.pk)
        quote = quote_generation(user=user, spec=spec, account=account)
        plan = effective_plan(account)
        private = plan.private_allowed if spec.private is None else spec.private
        status = admission(plan=plan, user_id=user.pk, relax=spec.relax)
        generation = Generation(
            id=spec.generation_id or uuid.uuid4(),
            user=user,
            status=status,
            kind=kind_of(spec),
            model_name=spec.model,
            pool=spec.pool,
            lane=quote.lane,
            relax=spec.relax,
            credits_held=quote.cost.total,
            credits_per_image=quote.cost.per_image,
            prompt=spec.prompt,
            negative_prompt=spec.negative_prompt,
            width=spec.width,
            height=spec.height,
            steps=spec.steps,
            guidance=spec.guidance,
            sampler=spec.sampler,
            loras=[{"name": lora.name, "weight": lora.weight} for lora in spec.loras],
            seed=seed,
            n=spec.n,
            input_upload=spec.input_upload,
            mask_upload=spec.mask_upload,
            strength=spec.strength,
            parent=spec.parent,
            action=spec.action,
            is_public=not private,
            webhook=spec.webhook,
            webhook_events=list(spec.webhook_events),
            request_id=request_id.get() or "",
            workflow=spec.workflow or {},
        )
        sql.insert(generation)  # Generation.objects.create() without the compiler (core/sql.py)
        try:
            hold_credits(account=quote.account, credits=quote.cost.total, generation_id=generation.id)
        except InsufficientCredits as exc:
            details = {"required": format_credits(exc.required), "available": format_credits(exc.available)}
            raise ApiError("insufficient_credits", f"{exc}.", details) from exc
        events.announce(generation, "generation.queued")
        if status == GenerationStatus.QUEUED:
            queues.enqueue_after_commit([generation])
    return generation


def cancel_generation(*, generation: Generation) -> Generation:
    """Cancel a waiting job at once; ask a running one to stop at its next step."""
    return lifecycle.cancel(generation)


def upload_create(*, user: User, data: bytes) -> Upload:
    png, width, height = clean_image(data)
    path, digest = save_content("uploads", png, "png")
    return Upload.objects.create(user=user, file=path, width=width, height=height, sha256=digest)

"""Writes: submitting generations (creating their rows), canceling them, storing uploads.

Creating a row gives it its first status (pending or queued, from `caps.admission`); every later
change of status is `generations.lifecycle`'s.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, replace
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
from core.model_catalog import ModelSpec
from generations import circuits, events, lifecycle, queues
from generations.caps import admission, lock_account
from generations.extensions import check_submission
from generations.loras import LoraRequest
from generations.models import Generation, GenerationKind, GenerationStatus, Image, Upload
from generations.positions import read_pool_state
from generations.registry import get_model
from generations.result_cache import cache_key, cached_charge, cached_source
from generations.samplers import DEFAULT_SAMPLER, samplers_for
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
    use_cache: bool = True  # False: render even when an identical generation has finished
    allow_fallback: bool = True  # may run on the model's fallback while its circuit is open
    fallback_from: str = ""  # set when it does: the model asked for


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


def rendering_parameters(spec: GenerationSpec) -> dict[str, Any] | None:
    """Every value that shapes the pixels, input images by content; None when the request may
    not be answered from (or serve as) a cached result: a random seed, an opt-out, a workflow."""
    if spec.seed is None or not spec.use_cache or spec.workflow is not None:
        return None
    return {
        "prompt": spec.prompt,
        "negative_prompt": spec.negative_prompt,
        "width": spec.width,
        "height": spec.height,
        "steps": spec.steps,
        "guidance": spec.guidance,
        "sampler": spec.sampler,
        "loras": [[lora.name, lora.weight] for lora in spec.loras],
        "seed": spec.seed,
        "n": spec.n,
        "input": spec.input_upload.sha256 if spec.input_upload else None,
        "mask": spec.mask_upload.sha256 if spec.mask_upload else None,
        "strength": spec.strength if spec.input_upload else None,
    }


def result_key(spec: GenerationSpec) -> str:
    model = get_model(spec.model)
    parameters = rendering_parameters(spec)
    return cache_key(model, parameters) if model is not None and parameters is not None else ""


def submit_generation(*, user: User, spec: GenerationSpec) -> Generation:
    check_submission(user=user, prompt=spec.prompt, negative_prompt=spec.negative_prompt)
    key = result_key(spec)
    source = cached_source(user=user, key=key, n=spec.n)
    if source is not None:
        return answer_from_cache(user=user, spec=spec, key=key, source=source)
    spec, circuit = route_around_open_circuit(user=user, spec=spec)
    if spec.fallback_from:
        key = result_key(spec)
    try:
        return enqueue_generation(user=user, spec=spec, key=key)
    except Exception:
        if circuit.state == "probe":
            circuits.give_back_probe(circuit.model)
        raise


def route_around_open_circuit(*, user: User, spec: GenerationSpec) -> tuple[GenerationSpec, circuits.Circuit]:
    """The spec to run: this one while its model's circuit lets jobs through, else its model's
    fallback where it has one that takes the request; else ``503 model_unavailable``."""
    circuit = circuits.admit(spec.model)
    if circuit.state != "open":
        return spec, circuit
    model = get_model(spec.model)
    fallback = get_model(model.fallback) if model and model.fallback else None
    if spec.allow_fallback and fallback is not None and fits(spec, fallback, user):
        fallback_circuit = circuits.admit(fallback.name)
        if fallback_circuit.state != "open":
            moved = replace(spec, model=fallback.name, pool=fallback.pool, fallback_from=spec.model)
            return moved, fallback_circuit
    message = f"The model {spec.model!r} is unavailable right now ({circuit.reason}); try again later."
    details = {"model": spec.model, "retry_after": circuit.retry_after}
    raise ApiError("model_unavailable", message, details, headers={"Retry-After": str(circuit.retry_after)})


def fits(spec: GenerationSpec, fallback: ModelSpec, user: User) -> bool:
    """Whether the fallback model takes this request as it is (sizes, steps, sampler, LoRAs,
    the user's plan): a request it would refuse is not moved there."""
    model = get_model(spec.model)
    sides_fit = all(
        fallback.min_side <= side <= fallback.max_side and side % fallback.size_step == 0
        for side in (spec.width, spec.height)
    )
    return (
        sides_fit
        and spec.steps <= fallback.max_steps
        and spec.sampler in samplers_for(fallback.family)
        and spec.workflow is None
        and (not spec.loras or (model is not None and model.family == fallback.family))
        and effective_plan(account_for(user)).allows_pool(fallback.pool)
    )


def new_generation(
    *, user: User, spec: GenerationSpec, quote: Quote, first_status: str, key: str
) -> Generation:
    """The row to insert, with its first status (a creation, not a change of status)."""
    plan = effective_plan(quote.account)
    private = plan.private_allowed if spec.private is None else spec.private
    return Generation(
        id=spec.generation_id or uuid.uuid4(),
        user=user,
        status=first_status,
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
        seed=spec.seed if spec.seed is not None else secrets.randbelow(2**32),
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
        cache_key=key,
        fallback_from=spec.fallback_from,
    )


def hold(quote: Quote, generation: Generation) -> None:
    try:
        hold_credits(account=quote.account, credits=generation.credits_held, generation_id=generation.id)
    except InsufficientCredits as exc:
        details = {"required": format_credits(exc.required), "available": format_credits(exc.available)}
        raise ApiError("insufficient_credits", f"{exc}.", details) from exc


def enqueue_generation(*, user: User, spec: GenerationSpec, key: str) -> Generation:
    read_pool_state(spec.pool)  # for the queued event and the response, in one round trip
    with transaction.atomic():
        account = lock_account(user.pk)
        quote = quote_generation(user=user, spec=spec, account=account)
        status = admission(plan=effective_plan(account), user_id=user.pk, relax=spec.relax)
        generation = new_generation(user=user, spec=spec, quote=quote, first_status=status, key=key)
        sql.insert(generation)  # Generation.objects.create() without the compiler (core/sql.py)
        hold(quote, generation)
        events.announce(generation, "generation.queued")
        if status == GenerationStatus.QUEUED:
            queues.enqueue_after_commit([generation])
    return generation


def answer_from_cache(*, user: User, spec: GenerationSpec, key: str, source: Generation) -> Generation:
    """A new generation, finished at once with the images of ``source`` (identical, finished):
    no GPU work, charged ATELIER_RESULT_CACHE_CHARGE of the price (nothing by default)."""
    with transaction.atomic():
        account = lock_account(user.pk)
        full = quote_generation(user=user, spec=spec, account=account)
        per_image = cached_charge(full.cost.per_image)
        quote = replace(full, cost=Cost(per_image, per_image * spec.n))
        # Queued for a moment, in this transaction only (never enqueued): the result cache's
        # transition in the lifecycle finishes it.
        queued = GenerationStatus.QUEUED
        generation = new_generation(user=user, spec=spec, quote=quote, first_status=queued, key=key)
        sql.insert(generation)
        hold(quote, generation)
        lifecycle.serve_from_cache(generation, list(source.images.all()))
    return generation


def cancel_generation(*, generation: Generation) -> Generation:
    """Cancel a waiting job at once; ask a running one to stop at its next step."""
    return lifecycle.cancel(generation)


def upload_create(*, user: User, data: bytes) -> Upload:
    png, width, height = clean_image(data)
    path, digest = save_content("uploads", png, "png")
    return Upload.objects.create(user=user, file=path, width=width, height=height, sha256=digest)

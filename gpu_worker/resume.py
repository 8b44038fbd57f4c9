"""Stopping a txt2img render at a step boundary and continuing it later to the identical image.

A preempted job (generations/preemption.py) keeps its latents after the last step it finished
and, for the multistep solvers, their history (DPM++ 2M mixes the last two model outputs). The
next run makes the same scheduler with the same timesteps, starts from those latents, restores
the history and skips the steps already done; a deterministic sampler then computes exactly what
the uninterrupted run would have. Ancestral and SDE samplers draw fresh noise each step from a
generator whose position is not kept, and img2img and inpainting mix their source image in by
step: those restart from step 0 (no point is saved).

The points live in Redis (`save_point`, `take_point`) for ATELIER_PREEMPT_STATE_TTL seconds.
"""

from __future__ import annotations

import copy
import io
from typing import Any

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from django.conf import settings

from generations import queues
from generations.models import Generation, GenerationKind
from gpu_worker.model import RenderSpec, ResumePoint

DETERMINISTIC_SCHEDULERS = (EulerDiscreteScheduler, DDIMScheduler, DPMSolverMultistepScheduler)


def resumable(spec: RenderSpec, scheduler: Any, pipe: Any) -> bool:
    """Whether a stop of this render can be resumed to the identical image."""
    if spec.kind != "txt2img" or not isinstance(scheduler, DETERMINISTIC_SCHEDULERS):
        return False
    config: dict[str, Any] = dict(getattr(scheduler, "config", {}))
    if "sde" in str(config.get("algorithm_type", "")):
        return False  # the SDE variants draw noise each step
    return hasattr(pipe, "prepare_latents") and isinstance(getattr(type(pipe), "interrupt", None), property)


def snapshot(step: int, latents: torch.Tensor, positions: list[int], scheduler: Any) -> ResumePoint:
    """The point after ``step`` steps of the images at ``positions`` of the batch."""
    history = [
        None if output is None else output[positions].detach().to("cpu").clone()
        for output in getattr(scheduler, "model_outputs", [])
    ]
    return ResumePoint(
        step=step,
        latents=latents.detach().to("cpu").clone(),
        history=history,
        lower_order_nums=int(getattr(scheduler, "lower_order_nums", 0)),
    )


def resuming(pipe: Any, scheduler: Any, point: ResumePoint) -> Any:
    """``pipe`` (already a view of its own, see `with_scheduler`) set to continue from ``point``:
    its scheduler takes the given latents as they are and resumes at the point's step with the
    solver's history, and the denoising loop skips the steps already done."""
    scheduler.__class__ = _resuming_scheduler_class(type(scheduler), point)
    view = copy.copy(pipe)
    view.__class__ = _skipping_pipeline_class(type(pipe))
    view.steps_to_skip = point.step
    return view


def _resuming_scheduler_class(base: type, point: ResumePoint) -> type:
    def set_timesteps(self: Any, *args: Any, **kwargs: Any) -> None:
        base.set_timesteps(self, *args, **kwargs)  # type: ignore[attr-defined]
        if hasattr(self, "set_begin_index"):
            self.set_begin_index(point.step)
        if point.history and hasattr(self, "model_outputs"):
            device = kwargs.get("device")
            self.model_outputs = [None if h is None else h.to(device) for h in point.history]
            self.lower_order_nums = point.lower_order_nums

    # The saved latents are already scaled: the pipeline's ``latents * init_noise_sigma`` must
    # leave them as they are (a division before it would not give back the same floats).
    members = {"set_timesteps": set_timesteps, "init_noise_sigma": property(lambda self: 1.0)}
    return type(base.__name__, (base,), members)


_skipping_classes: dict[type, type] = {}


def _skipping_pipeline_class(base: type) -> type:
    """The pipeline class with an ``interrupt`` that is true for the first ``steps_to_skip``
    reads: diffusers' loop reads it once at the top of each step and skips the step when true
    (no denoiser call, no scheduler step, no callback)."""
    if base not in _skipping_classes:

        def interrupt(self: Any) -> bool:
            if self.steps_to_skip > 0:
                self.steps_to_skip -= 1
                return True
            return bool(self._interrupt)

        _skipping_classes[base] = type(base.__name__, (base,), {"interrupt": property(interrupt)})
    return _skipping_classes[base]


# Keeping the points between runs.


def point_key(generation_id: str) -> str:
    return f"atelier:resume:{generation_id}"


def save_point(generation: Generation, point: ResumePoint) -> bool:
    """Keep the point for the job's next run; False when Redis would not take it (it restarts)."""
    buffer = io.BytesIO()
    torch.save(
        {
            "step": point.step,
            "latents": point.latents,
            "history": point.history,
            "lower_order_nums": point.lower_order_nums,
        },
        buffer,
    )
    try:
        queues.redis_client().set(
            point_key(str(generation.id)), buffer.getvalue(), ex=settings.ATELIER_PREEMPT_STATE_TTL
        )
    except Exception:
        return False
    return True


def take_point(generation: Generation) -> ResumePoint | None:
    """The point a preempted job stopped at, removed from Redis (a run that is lost after this
    restarts from step 0, which is always correct)."""
    if not generation.preemptions or generation.kind != GenerationKind.TXT2IMG:
        return None
    raw = queues.redis_client().getdel(point_key(str(generation.id)))
    if raw is None:
        return None
    saved = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    return ResumePoint(
        step=int(saved["step"]),
        latents=saved["latents"],
        history=list(saved["history"]),
        lower_order_nums=int(saved["lower_order_nums"]),
    )

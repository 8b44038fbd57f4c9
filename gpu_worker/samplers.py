"""Sampler names to diffusers schedulers, made from each model's own scheduler config."""

from __future__ import annotations

import copy
from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
)

from generations.samplers import DEFAULT_SAMPLER


class UnsupportedSampler(ValueError):
    """The sampler does not fit the model's kind of diffusion (say, DDIM on a flow-matching model)."""


# Samplers on a discrete noise schedule (SD 1.x/2.x, SDXL): the class and what the name implies.
# Whatever the name leaves open (betas, prediction type, timestep spacing) comes from the model's
# own config; the sigma spacing is pinned so that "euler" on a Karras-default model is plain Euler.
PLAIN_SIGMAS = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}
DISCRETE_SAMPLERS: dict[str, tuple[Any, dict[str, Any]]] = {
    "euler": (EulerDiscreteScheduler, PLAIN_SIGMAS),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, **PLAIN_SIGMAS},
    ),
    "dpmpp_2m_karras": (
        DPMSolverMultistepScheduler,
        {**PLAIN_SIGMAS, "algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    # Latent models must not clip the predicted sample to [-1, 1] (DDIM's default is for pixels).
    "ddim": (DDIMScheduler, {"clip_sample": False, "set_alpha_to_one": False}),
}


def is_flow_matching(scheduler: Any) -> bool:
    return type(scheduler).__name__.startswith("FlowMatch") or (
        scheduler.config.get("prediction_type") == "flow_prediction"
    )


def make_scheduler(model_scheduler: Any, sampler: str) -> Any:
    """A new scheduler for `sampler`, made from the config of the model's own scheduler.

    Schedulers keep per-run state (timesteps, step index, the multistep solvers' history), so every
    render gets a fresh one and the model's own is never stepped.
    """
    config = model_scheduler.config
    if sampler == DEFAULT_SAMPLER:
        return type(model_scheduler).from_config(config)
    if is_flow_matching(model_scheduler):
        if sampler == "euler" and type(model_scheduler).__name__.startswith("FlowMatch"):
            return FlowMatchEulerDiscreteScheduler.from_config(config)
        raise UnsupportedSampler(f"the {sampler!r} sampler does not fit a flow-matching model")
    if sampler not in DISCRETE_SAMPLERS:
        raise UnsupportedSampler(f"unknown sampler {sampler!r}")
    scheduler_class, implied = DISCRETE_SAMPLERS[sampler]
    return scheduler_class.from_config(config, **implied)


def with_scheduler(pipe: Any, scheduler: Any) -> Any:
    """`pipe` with its own scheduler: a shallow copy sharing every other component (no memory), so
    the cached pipelines and their scheduler stay as they were for the next job."""
    view = copy.copy(pipe)
    view.scheduler = scheduler
    return view

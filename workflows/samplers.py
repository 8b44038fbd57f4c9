"""ComfyUI's sampler and scheduler names that the worker can run, and the diffusers scheduler each
maps to (COMFYUI_API.md section 2). Only these are advertised: anything else is refused at
submission with ``value_not_in_list``.

The name lists are free of diffusers imports (the web tier validates with them).
"""

from __future__ import annotations

from typing import Any

# sampler_name -> (diffusers scheduler class, what the name implies)
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm_2": ("KDPM2DiscreteScheduler", {}),
    "dpm_2_ancestral": ("KDPM2AncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "dpmpp_sde": ("DPMSolverSinglestepScheduler", {}),
    "ddim": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False}),
    "uni_pc": ("UniPCMultistepScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
}

PLAIN_SIGMAS = {"use_karras_sigmas": False, "use_exponential_sigmas": False}
# scheduler -> the config it sets (sigma spacing and timestep spacing)
SCHEDULERS: dict[str, dict[str, Any]] = {
    "normal": {**PLAIN_SIGMAS},
    "karras": {**PLAIN_SIGMAS, "use_karras_sigmas": True},
    "exponential": {**PLAIN_SIGMAS, "use_exponential_sigmas": True},
    "sgm_uniform": {**PLAIN_SIGMAS, "timestep_spacing": "trailing"},
    "simple": {**PLAIN_SIGMAS, "timestep_spacing": "trailing"},
    "ddim_uniform": {**PLAIN_SIGMAS, "timestep_spacing": "leading"},
}
# Sigma spacings only the sigma-based (k-diffusion style) schedulers implement.
SIGMA_SPACINGS = ("use_karras_sigmas", "use_exponential_sigmas")

SAMPLER_NAMES = tuple(SAMPLERS)
SCHEDULER_NAMES = tuple(SCHEDULERS)


def make_scheduler(model_scheduler: Any, sampler_name: str, scheduler_name: str) -> Any:
    """A fresh diffusers scheduler for this pair, from the model's own scheduler config (its betas
    and prediction type are kept)."""
    import diffusers

    class_name, implied = SAMPLERS[sampler_name]
    scheduler_class = getattr(diffusers, class_name)
    spacing = dict(SCHEDULERS[scheduler_name])
    accepted = scheduler_class.__init__.__code__.co_varnames
    for key in SIGMA_SPACINGS:
        if key not in accepted:
            spacing.pop(key, None)
    return scheduler_class.from_config(model_scheduler.config, **implied, **spacing)

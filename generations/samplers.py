"""Samplers a job may ask for, and which of them fit each model family.

The names are the ones people know from other UIs. The worker maps them to diffusers schedulers
(gpu_worker/samplers.py), each made from the model's own scheduler config, so a model's noise
schedule, prediction type (epsilon, v-prediction) and timestep spacing are kept.

Kept free of Django and diffusers imports: the web process validates with it.
"""

from __future__ import annotations

DEFAULT_SAMPLER = "default"

# name -> what the Create page shows
SAMPLERS: dict[str, str] = {
    DEFAULT_SAMPLER: "Model default",
    "euler": "Euler",
    "euler_a": "Euler ancestral",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_karras": "DPM++ 2M Karras",
    "ddim": "DDIM",
}
SAMPLER_NAMES = tuple(SAMPLERS)

# Flow-matching models (SD3) predict a velocity along a straight path from noise to image; only
# the flow-matching Euler sampler integrates that. The others assume a discrete noise schedule.
FLOW_MATCHING_FAMILIES = frozenset({"sd3"})
FLOW_MATCHING_SAMPLERS = (DEFAULT_SAMPLER, "euler")


def samplers_for(family: str) -> tuple[str, ...]:
    """The samplers a model of `family` can run, the model's own first."""
    if family in FLOW_MATCHING_FAMILIES:
        return FLOW_MATCHING_SAMPLERS
    return SAMPLER_NAMES

"""The sampling nodes: the denoising loop over a latent, guided by two conditionings."""

from __future__ import annotations

from typing import Any

from workflows import runtime
from workflows.samplers import SAMPLER_NAMES, SCHEDULER_NAMES

MAX_SEED = 0xFFFFFFFFFFFFFFFF


def common_inputs() -> dict[str, Any]:
    return {
        "model": ("MODEL",),
        "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
        "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
        "sampler_name": (list(SAMPLER_NAMES),),
        "scheduler": (list(SCHEDULER_NAMES),),
        "positive": ("CONDITIONING",),
        "negative": ("CONDITIONING",),
        "latent_image": ("LATENT",),
    }


class KSampler:
    CATEGORY = "sampling"
    DESCRIPTION = "Denoises a latent image with the model, guided by the positive and negative prompts."
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The denoised latent.",)
    FUNCTION = "sample"
    # How pricing reads it: the steps it runs (workflows/pricing.py).
    ATELIER_SAMPLING = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        inputs = common_inputs()
        seed = ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True})
        return {
            "required": {
                "model": inputs["model"],
                "seed": seed,
                **{k: v for k, v in inputs.items() if k != "model"},
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            }
        }

    @staticmethod
    def steps_run(inputs: dict[str, Any]) -> int:
        return int(inputs.get("steps", 20))

    @staticmethod
    def output_shape(inputs: dict[str, Any], shapes: dict[str, Any]) -> Any:
        return shapes.get("latent_image")

    def sample(
        self,
        model: runtime.ModelHandle,
        seed: int,
        steps: int,
        cfg: float,
        sampler_name: str,
        scheduler: str,
        positive: Any,
        negative: Any,
        latent_image: dict[str, Any],
        denoise: float = 1.0,
    ) -> tuple[dict[str, Any]]:
        from workflows.sampling import Sampling, sample

        plan = Sampling(
            seed=seed, steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler, denoise=denoise
        )
        return (sample(model, plan, positive, negative, latent_image),)


class KSamplerAdvanced:
    CATEGORY = "sampling"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    ATELIER_SAMPLING = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        inputs = common_inputs()
        return {
            "required": {
                "model": inputs["model"],
                "add_noise": (["enable", "disable"],),
                "noise_seed": (
                    "INT",
                    {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True},
                ),
                **{k: v for k, v in inputs.items() if k != "model"},
                "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000}),
                "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000}),
                "return_with_leftover_noise": (["disable", "enable"],),
            }
        }

    @staticmethod
    def steps_run(inputs: dict[str, Any]) -> int:
        steps = int(inputs.get("steps", 20))
        start, end = int(inputs.get("start_at_step", 0)), int(inputs.get("end_at_step", 10000))
        return max(0, min(end, steps) - start)

    @staticmethod
    def output_shape(inputs: dict[str, Any], shapes: dict[str, Any]) -> Any:
        return shapes.get("latent_image")

    def sample(
        self,
        model: runtime.ModelHandle,
        add_noise: str,
        noise_seed: int,
        steps: int,
        cfg: float,
        sampler_name: str,
        scheduler: str,
        positive: Any,
        negative: Any,
        latent_image: dict[str, Any],
        start_at_step: int,
        end_at_step: int,
        return_with_leftover_noise: str,
    ) -> tuple[dict[str, Any]]:
        from workflows.sampling import Sampling, sample

        plan = Sampling(
            seed=noise_seed,
            steps=steps,
            cfg=cfg,
            sampler_name=sampler_name,
            scheduler=scheduler,
            start_step=start_at_step,
            last_step=end_at_step,
            add_noise=add_noise == "enable",
            leftover_noise=return_with_leftover_noise == "enable",
        )
        return (sample(model, plan, positive, negative, latent_image),)


NODE_CLASS_MAPPINGS = {"KSampler": KSampler, "KSamplerAdvanced": KSamplerAdvanced}
NODE_DISPLAY_NAME_MAPPINGS = {"KSampler": "KSampler", "KSamplerAdvanced": "KSampler (Advanced)"}

"""LoRA loaders: a LoRA file of the folder (``ATELIER_LORA_DIR``) patched onto MODEL and CLIP.

The patch is applied around each sampling (or text encoding) that uses the patched value and taken
off after (workflows/runtime.py): the resident model is shared and never rewritten or reloaded.
"""

from __future__ import annotations

from typing import Any

from generations.loras import lora_path
from workflows import runtime, scope

STRENGTH = ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01})


def file_state(lora_name: str) -> str:
    """What IS_CHANGED reports: the file's size and time, so a replaced file is not served from
    the output cache of the text encodings made with the old one."""
    path = lora_path(lora_name)
    if path is None:
        return "missing"
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


class LoraLoader:
    CATEGORY = "loaders"
    DESCRIPTION = "Applies a LoRA to the model's denoiser and text encoder."
    RETURN_TYPES = ("MODEL", "CLIP")
    OUTPUT_TOOLTIPS = ("The patched denoiser.", "The patched text encoder.")
    FUNCTION = "load_lora"
    ATELIER_CACHE_OUTPUT = False  # it hands on the resident model (workflows/executor.py)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("MODEL",),
                "clip": ("CLIP",),
                "lora_name": (list(scope.current().loras), {"tooltip": "The LoRA file."}),
                "strength_model": STRENGTH,
                "strength_clip": STRENGTH,
            }
        }

    @classmethod
    def IS_CHANGED(cls, lora_name: str = "", **_: Any) -> str:
        return file_state(lora_name)

    def load_lora(
        self,
        model: runtime.ModelHandle,
        clip: runtime.ClipHandle,
        lora_name: str,
        strength_model: float,
        strength_clip: float,
    ) -> tuple[Any, Any]:
        worker = runtime.current()
        if strength_model:
            model = model.with_patch(worker.lora_patch(lora_name, strength_model, "model"))
        if strength_clip:
            clip = clip.with_patch(worker.lora_patch(lora_name, strength_clip, "clip"))
        return model, clip


class LoraLoaderModelOnly(LoraLoader):
    DESCRIPTION = "Applies a LoRA to the model's denoiser only."
    RETURN_TYPES = ("MODEL",)  # type: ignore[assignment]
    OUTPUT_TOOLTIPS = ("The patched denoiser.",)  # type: ignore[assignment]
    FUNCTION = "load_lora_model_only"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("MODEL",),
                "lora_name": (list(scope.current().loras), {"tooltip": "The LoRA file."}),
                "strength_model": STRENGTH,
            }
        }

    def load_lora_model_only(
        self, model: runtime.ModelHandle, lora_name: str, strength_model: float
    ) -> tuple[Any]:
        if strength_model:
            model = model.with_patch(runtime.current().lora_patch(lora_name, strength_model, "model"))
        return (model,)


NODE_CLASS_MAPPINGS = {"LoraLoader": LoraLoader, "LoraLoaderModelOnly": LoraLoaderModelOnly}
NODE_DISPLAY_NAME_MAPPINGS = {"LoraLoader": "Load LoRA", "LoraLoaderModelOnly": "LoraLoaderModelOnly"}

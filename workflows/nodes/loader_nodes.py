"""Checkpoints, text encoding and the VAE."""

from __future__ import annotations

import dataclasses
from typing import Any

from workflows import runtime, scope


class CheckpointLoaderSimple:
    CATEGORY = "loaders"
    DESCRIPTION = "Loads a configured model: its denoiser, text encoder and VAE."
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    OUTPUT_TOOLTIPS = ("The denoising model.", "The text encoder.", "The VAE.")
    FUNCTION = "load_checkpoint"
    ATELIER_CACHE_OUTPUT = False  # the worker's model cache holds the model (workflows/executor.py)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"ckpt_name": (list(scope.current().checkpoints), {"tooltip": "The model."})}}

    def load_checkpoint(self, ckpt_name: str) -> tuple[Any, ...]:
        loaded = runtime.current().load_checkpoint(ckpt_name)
        return (
            runtime.ModelHandle(ckpt_name, loaded),
            runtime.ClipHandle(ckpt_name, loaded),
            runtime.VaeHandle(ckpt_name, loaded),
        )


class CLIPTextEncode:
    CATEGORY = "conditioning"
    DESCRIPTION = "Encodes a text prompt into the conditioning that guides sampling."
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                "clip": ("CLIP",),
            }
        }

    def encode(self, clip: runtime.ClipHandle, text: str) -> tuple[Any]:
        from workflows.sampling import encode_text

        return (encode_text(clip, text),)


class CLIPSetLastLayer:
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "set_last_layer"
    ATELIER_CACHE_OUTPUT = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "clip": ("CLIP",),
                "stop_at_clip_layer": ("INT", {"default": -1, "min": -24, "max": -1}),
            }
        }

    def set_last_layer(self, clip: runtime.ClipHandle, stop_at_clip_layer: int) -> tuple[Any]:
        return (dataclasses.replace(clip, skip_layers=-stop_at_clip_layer - 1),)


class VAEDecode:
    CATEGORY = "latent"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "vae": ("VAE",)}}

    @staticmethod
    def output_shape(inputs: dict[str, Any], shapes: dict[str, Any]) -> Any:
        return shapes.get("samples")

    def decode(self, vae: runtime.VaeHandle, samples: dict[str, Any]) -> tuple[Any]:
        from workflows.tensors import vae_decode

        return (vae_decode(vae, samples["samples"]),)


class VAEEncode:
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",)}}

    @staticmethod
    def output_shape(inputs: dict[str, Any], shapes: dict[str, Any]) -> Any:
        return shapes.get("pixels")

    def encode(self, vae: runtime.VaeHandle, pixels: Any) -> tuple[dict[str, Any]]:
        from workflows.tensors import encoded

        return (encoded(vae, pixels),)


class VAEEncodeForInpaint:
    CATEGORY = "latent/inpaint"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "pixels": ("IMAGE",),
                "vae": ("VAE",),
                "mask": ("MASK",),
                "grow_mask_by": ("INT", {"default": 6, "min": 0, "max": 64, "step": 1}),
            }
        }

    @staticmethod
    def output_shape(inputs: dict[str, Any], shapes: dict[str, Any]) -> Any:
        return shapes.get("pixels")

    def encode(
        self, vae: runtime.VaeHandle, pixels: Any, mask: Any, grow_mask_by: int = 6
    ) -> tuple[dict[str, Any]]:
        from workflows.tensors import encode_for_inpaint

        return (encode_for_inpaint(vae, pixels, mask, grow_mask_by),)


NODE_CLASS_MAPPINGS = {
    "CheckpointLoaderSimple": CheckpointLoaderSimple,
    "CLIPTextEncode": CLIPTextEncode,
    "CLIPSetLastLayer": CLIPSetLastLayer,
    "VAEDecode": VAEDecode,
    "VAEEncode": VAEEncode,
    "VAEEncodeForInpaint": VAEEncodeForInpaint,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "CheckpointLoaderSimple": "Load Checkpoint",
    "CLIPTextEncode": "CLIP Text Encode (Prompt)",
    "CLIPSetLastLayer": "CLIP Set Last Layer",
    "VAEDecode": "VAE Decode",
    "VAEEncode": "VAE Encode",
    "VAEEncodeForInpaint": "VAE Encode (for Inpainting)",
}

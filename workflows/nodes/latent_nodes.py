"""Latents: an empty one, resized ones, and the noise mask of inpainting."""

from __future__ import annotations

from typing import Any

from workflows.nodes import MAX_RESOLUTION

UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
CROP_METHODS = ["disabled", "center"]


class EmptyLatentImage:
    CATEGORY = "latent"
    DESCRIPTION = "An empty latent image of the given size, to be denoised by a sampler."
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "width": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
                "height": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
            }
        }

    @staticmethod
    def output_shape(inputs: dict[str, Any], shapes: dict[str, Any]) -> tuple[int, int, int]:
        return int(inputs["width"]), int(inputs["height"]), int(inputs["batch_size"])

    def generate(self, width: int, height: int, batch_size: int = 1) -> tuple[dict[str, Any]]:
        from workflows.tensors import empty_latent

        return ({"samples": empty_latent(width, height, batch_size)},)


class LatentUpscale:
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "samples": ("LATENT",),
                "upscale_method": (UPSCALE_METHODS,),
                "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "crop": (CROP_METHODS,),
            }
        }

    @staticmethod
    def output_shape(inputs: dict[str, Any], shapes: dict[str, Any]) -> tuple[int, int, int] | None:
        source = shapes.get("samples")
        if source is None:
            return None
        width, height = int(inputs["width"]), int(inputs["height"])
        if width == 0 and height == 0:
            return source  # type: ignore[no-any-return]
        width = width or round(height * source[0] / source[1])
        height = height or round(width * source[1] / source[0])
        return width, height, source[2]

    def upscale(
        self, samples: dict[str, Any], upscale_method: str, width: int, height: int, crop: str
    ) -> tuple[dict[str, Any]]:
        from workflows.tensors import resize_latent

        return (resize_latent(samples, upscale_method, width=width, height=height, crop=crop),)


class LatentUpscaleBy:
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "samples": ("LATENT",),
                "upscale_method": (UPSCALE_METHODS,),
                "scale_by": ("FLOAT", {"default": 1.5, "min": 0.01, "max": 8.0, "step": 0.01}),
            }
        }

    @staticmethod
    def output_shape(inputs: dict[str, Any], shapes: dict[str, Any]) -> tuple[int, int, int] | None:
        source = shapes.get("samples")
        if source is None:
            return None
        scale = float(inputs["scale_by"])
        return round(source[0] * scale / 8) * 8, round(source[1] * scale / 8) * 8, source[2]

    def upscale(self, samples: dict[str, Any], upscale_method: str, scale_by: float) -> tuple[dict[str, Any]]:
        from workflows.tensors import resize_latent

        return (resize_latent(samples, upscale_method, scale=scale_by),)


class SetLatentNoiseMask:
    CATEGORY = "latent/inpaint"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "set_mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "mask": ("MASK",)}}

    @staticmethod
    def output_shape(inputs: dict[str, Any], shapes: dict[str, Any]) -> tuple[int, int, int] | None:
        return shapes.get("samples")

    def set_mask(self, samples: dict[str, Any], mask: Any) -> tuple[dict[str, Any]]:
        return ({**samples, "noise_mask": mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))},)


NODE_CLASS_MAPPINGS = {
    "EmptyLatentImage": EmptyLatentImage,
    "LatentUpscale": LatentUpscale,
    "LatentUpscaleBy": LatentUpscaleBy,
    "SetLatentNoiseMask": SetLatentNoiseMask,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "EmptyLatentImage": "Empty Latent Image",
    "LatentUpscale": "Upscale Latent",
    "LatentUpscaleBy": "Upscale Latent By",
    "SetLatentNoiseMask": "Set Latent Noise Mask",
}

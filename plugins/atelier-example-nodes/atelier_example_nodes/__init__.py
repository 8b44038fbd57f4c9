"""Example custom nodes, written the ComfyUI way: an IMAGE is a (batch, height, width, channels)
tensor of floats in 0..1, each node a class with INPUT_TYPES, RETURN_TYPES, FUNCTION and friends.

No torch import: the web tier imports this module to list the nodes; the tensor's own methods do
the work when a worker runs them.
"""

from __future__ import annotations

import hashlib
from typing import Any


class ExampleInvert:
    """Inverts the colours of the images (alpha, if any, is kept)."""

    CATEGORY = "image/postprocessing"
    DESCRIPTION = "Inverts the colours of the images."
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("inverted",)
    FUNCTION = "invert"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE", {"tooltip": "The images to invert."})}}

    def invert(self, image: Any) -> tuple[Any]:
        inverted = image.clone()
        inverted[..., :3] = 1.0 - image[..., :3]
        return (inverted,)


class ExamplePosterize:
    """Keeps ``levels`` evenly spaced values per colour channel."""

    CATEGORY = "image/postprocessing"
    DESCRIPTION = "Reduces each colour channel to a few levels."
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("posterized",)
    FUNCTION = "posterize"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "levels": ("INT", {"default": 4, "min": 2, "max": 64, "step": 1}),
            }
        }

    @classmethod
    def IS_CHANGED(cls, levels: int = 4, **_: Any) -> str:
        # Pure function of its inputs: the same levels (and the same upstream) may be reused.
        return hashlib.sha256(str(levels).encode()).hexdigest()

    def posterize(self, image: Any, levels: int) -> tuple[Any]:
        steps = float(levels - 1)
        posterized = image.clone()
        posterized[..., :3] = (image[..., :3] * steps).round() / steps
        return (posterized,)


NODE_CLASS_MAPPINGS = {"ExampleInvert": ExampleInvert, "ExamplePosterize": ExamplePosterize}
NODE_DISPLAY_NAME_MAPPINGS = {"ExampleInvert": "Invert (example)", "ExamplePosterize": "Posterize (example)"}

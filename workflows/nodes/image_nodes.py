"""Images in and out: loading an upload, saving and previewing results, resizing."""

from __future__ import annotations

from typing import Any

from workflows import runtime, scope
from workflows.nodes import MAX_RESOLUTION

IMAGE_UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]


class SaveImage:
    CATEGORY = "image"
    DESCRIPTION = "Saves the images to your outputs (and My images)."
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    IMAGE_KIND = "output"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    @staticmethod
    def output_images(inputs: dict[str, Any], shapes: dict[str, Any]) -> int:
        shape = shapes.get("images")
        return int(shape[2]) if shape else 1

    def save_images(
        self, images: Any, filename_prefix: str = "ComfyUI", prompt: Any = None, extra_pnginfo: Any = None
    ) -> dict[str, Any]:
        from workflows.tensors import to_pictures

        saved = runtime.current().save_images(
            to_pictures(images),
            prefix=filename_prefix,
            kind=self.IMAGE_KIND,
            prompt=prompt,
            extra_pnginfo=extra_pnginfo,
        )
        return {"ui": {"images": saved}}


class PreviewImage(SaveImage):
    DESCRIPTION = "Shows the images without keeping them in My images."
    IMAGE_KIND = "temp"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {"images": ("IMAGE",)},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save_images(
        self,
        images: Any,
        filename_prefix: str = "ComfyUI_temp",
        prompt: Any = None,
        extra_pnginfo: Any = None,
    ) -> dict[str, Any]:
        return super().save_images(images, "ComfyUI_temp", prompt, extra_pnginfo)


class SaveImageWebsocket:
    CATEGORY = "api node/image"
    DESCRIPTION = "Sends each image to the submitting socket as a binary frame, without saving it."
    RETURN_TYPES = ()
    FUNCTION = "send_images"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"images": ("IMAGE",)}}

    def send_images(self, images: Any) -> dict[str, Any]:
        from workflows.tensors import to_pictures

        for picture in to_pictures(images):
            runtime.current().send_image(picture)
        return {}


class LoadImage:
    CATEGORY = "image"
    DESCRIPTION = "One of your uploads (POST /upload/image), with its alpha channel as a mask."
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": (sorted(scope.current().input_files), {"image_upload": True})}}

    @staticmethod
    def output_shape(inputs: dict[str, Any], shapes: dict[str, Any]) -> tuple[int, int, int] | None:
        size = scope.current().input_files.get(str(inputs.get("image")))
        return (size[0], size[1], 1) if size else None

    @classmethod
    def IS_CHANGED(cls, image: str) -> str:
        return image  # an upload's name is its content's: a new picture gets a new name

    def load_image(self, image: str) -> tuple[Any, Any]:
        from workflows.tensors import image_and_mask

        return image_and_mask(runtime.current().load_input(image))


class ImageScale:
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (IMAGE_UPSCALE_METHODS,),
                "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "crop": (["disabled", "center"],),
            }
        }

    @staticmethod
    def output_shape(inputs: dict[str, Any], shapes: dict[str, Any]) -> tuple[int, int, int] | None:
        source = shapes.get("image")
        if source is None:
            return None
        width, height = int(inputs["width"]), int(inputs["height"])
        width = width or round(height * source[0] / max(source[1], 1))
        height = height or round(width * source[1] / max(source[0], 1))
        return width or source[0], height or source[1], source[2]

    def upscale(self, image: Any, upscale_method: str, width: int, height: int, crop: str) -> tuple[Any]:
        from workflows.tensors import resize_image

        return (resize_image(image, upscale_method, width=width, height=height, crop=crop),)


class ImageScaleBy:
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (IMAGE_UPSCALE_METHODS,),
                "scale_by": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01}),
            }
        }

    @staticmethod
    def output_shape(inputs: dict[str, Any], shapes: dict[str, Any]) -> tuple[int, int, int] | None:
        source = shapes.get("image")
        if source is None:
            return None
        scale = float(inputs["scale_by"])
        return round(source[0] * scale), round(source[1] * scale), source[2]

    def upscale(self, image: Any, upscale_method: str, scale_by: float) -> tuple[Any]:
        from workflows.tensors import resize_image

        return (resize_image(image, upscale_method, scale=scale_by),)


NODE_CLASS_MAPPINGS = {
    "SaveImage": SaveImage,
    "PreviewImage": PreviewImage,
    "SaveImageWebsocket": SaveImageWebsocket,
    "LoadImage": LoadImage,
    "ImageScale": ImageScale,
    "ImageScaleBy": ImageScaleBy,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SaveImage": "Save Image",
    "PreviewImage": "Preview Image",
    "SaveImageWebsocket": "Save Image (WebSocket)",
    "LoadImage": "Load Image",
    "ImageScale": "Upscale Image",
    "ImageScaleBy": "Upscale Image By",
}

"""The tensors that flow between nodes, as ComfyUI shapes them: IMAGE is (batch, height, width,
channels) floats in 0..1, MASK is (batch, height, width) with 1 where to repaint, LATENT is
``{"samples": (batch, channels, height/8, width/8)}`` already multiplied by the VAE's scaling
factor (plus ``noise_mask`` for inpainting). Runs in the worker only."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from workflows.runtime import VaeHandle

INTERPOLATION = {
    "nearest-exact": "nearest-exact",
    "bilinear": "bilinear",
    "area": "area",
    "bicubic": "bicubic",
    "bislerp": "bilinear",
}


# How many pixels one latent pixel stands for. ComfyUI's nodes assume 8; a model whose VAE
# downsamples more (the built-in model's, 16) gets its latents tagged with its own ratio.
LATENT_RATIO = "downscale_ratio"


def empty_latent(width: int, height: int, batch_size: int, channels: int = 4) -> torch.Tensor:
    return torch.zeros(batch_size, channels, height // 8, width // 8)


def ratio_of(latent: dict[str, Any]) -> int:
    return int(latent.get(LATENT_RATIO, 8))


def vae_ratio(vae_model: Any) -> int:
    return int(2 ** (len(vae_model.config.block_out_channels) - 1))


def vae_of(vae: VaeHandle) -> Any:
    return vae.loaded.txt2img.vae


def encoded(vae: VaeHandle, pixels: torch.Tensor) -> dict[str, Any]:
    """A LATENT of the pixels, tagged with the VAE's ratio."""
    return {"samples": vae_encode(vae, pixels), LATENT_RATIO: vae_ratio(vae_of(vae))}


def vae_decode(vae: VaeHandle, samples: torch.Tensor) -> torch.Tensor:
    model = vae_of(vae)
    scale = float(model.config.scaling_factor)
    shift = float(getattr(model.config, "shift_factor", None) or 0.0)
    with vae.loaded.lock, torch.inference_mode():
        latents = (samples / scale + shift).to(model.device, model.dtype)
        pixels: torch.Tensor = model.decode(latents, return_dict=False)[0].float().cpu()
    return ((pixels + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous()


def vae_encode(vae: VaeHandle, pixels: torch.Tensor) -> torch.Tensor:
    model = vae_of(vae)
    height, width = pixels.shape[1] // 8 * 8, pixels.shape[2] // 8 * 8
    pixels = pixels[:, :height, :width, :3]
    scale = float(model.config.scaling_factor)
    shift = float(getattr(model.config, "shift_factor", None) or 0.0)
    with vae.loaded.lock, torch.inference_mode():
        batch = (pixels.permute(0, 3, 1, 2) * 2.0 - 1.0).to(model.device, model.dtype)
        latents: torch.Tensor = model.encode(batch).latent_dist.mode().float().cpu()
    return (latents - shift) * scale


def encode_for_inpaint(
    vae: VaeHandle, pixels: torch.Tensor, mask: torch.Tensor, grow_mask_by: int
) -> dict[str, Any]:
    """The masked pixels greyed out before encoding, and the (grown) mask as the noise mask."""
    height, width = pixels.shape[1] // 8 * 8, pixels.shape[2] // 8 * 8
    mask = F.interpolate(
        mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float(),
        size=(pixels.shape[1], pixels.shape[2]),
        mode="bilinear",
    )
    pixels, mask = pixels[:, :height, :width].clone(), mask[:, :, :height, :width]
    if grow_mask_by:
        kernel = torch.ones(1, 1, grow_mask_by * 2 + 1, grow_mask_by * 2 + 1)
        mask = (F.conv2d(mask.round(), kernel, padding=grow_mask_by) > 0).float()
    keep = (1.0 - mask.round()).permute(0, 2, 3, 1)
    pixels[..., :3] = (pixels[..., :3] - 0.5) * keep + 0.5
    return {**encoded(vae, pixels), "noise_mask": mask}


def fit(tensor: torch.Tensor, width: int, height: int, method: str, crop: str) -> torch.Tensor:
    """(batch, channels, h, w) resized to height x width, the centre cropped first when asked."""
    if crop == "center":
        old_w, old_h = tensor.shape[-1], tensor.shape[-2]
        old_aspect, new_aspect = old_w / old_h, width / height
        if old_aspect > new_aspect:
            keep = round(old_w * new_aspect / old_aspect)
            start = (old_w - keep) // 2
            tensor = tensor[..., start : start + keep]
        elif old_aspect < new_aspect:
            keep = round(old_h * old_aspect / new_aspect)
            start = (old_h - keep) // 2
            tensor = tensor[..., start : start + keep, :]
    mode = INTERPOLATION.get(method, "bilinear")
    align = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(tensor, size=(height, width), mode=mode, **align)


def target_size(
    width: int, height: int, source_w: int, source_h: int, scale: float | None
) -> tuple[int, int]:
    if scale is not None:
        return max(1, round(source_w * scale)), max(1, round(source_h * scale))
    if width == 0 and height == 0:
        return source_w, source_h
    width = width or max(1, round(height * source_w / source_h))
    height = height or max(1, round(width * source_h / source_w))
    return width, height


def resize_latent(
    latent: dict[str, Any],
    method: str,
    *,
    width: int = 0,
    height: int = 0,
    scale: float | None = None,
    crop: str = "disabled",
) -> dict[str, Any]:
    samples = latent["samples"]
    ratio = ratio_of(latent)
    w, h = target_size(
        width // ratio if scale is None else 0,
        height // ratio if scale is None else 0,
        samples.shape[-1],
        samples.shape[-2],
        scale,
    )
    if scale is None and width == 0 and height == 0:
        return dict(latent)
    return {**latent, "samples": fit(samples, w, h, method, crop)}


def resize_image(
    image: torch.Tensor,
    method: str,
    *,
    width: int = 0,
    height: int = 0,
    scale: float | None = None,
    crop: str = "disabled",
) -> torch.Tensor:
    w, h = target_size(width, height, image.shape[2], image.shape[1], scale)
    if method == "lanczos":
        pictures = [picture.resize((w, h), Image.Resampling.LANCZOS) for picture in to_pictures(image)]
        return torch.cat([from_picture(p) for p in pictures])
    return fit(image.permute(0, 3, 1, 2), w, h, method, crop).permute(0, 2, 3, 1).clamp(0.0, 1.0)


def to_pictures(images: torch.Tensor) -> list[Image.Image]:
    pixels = (images.detach().float().cpu().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()
    return [Image.fromarray(frame[..., :3] if frame.shape[-1] >= 3 else frame[..., 0]) for frame in pixels]


def from_picture(picture: Image.Image) -> torch.Tensor:
    array = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy())[None]


def image_and_mask(picture: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """IMAGE and MASK of a loaded picture: the mask is 1 where its alpha is transparent."""
    image = from_picture(picture)
    if "A" in picture.getbands():
        alpha = np.asarray(picture.getchannel("A"), dtype=np.float32) / 255.0
        mask = 1.0 - torch.from_numpy(alpha.copy())[None]
    else:
        mask = torch.zeros(1, picture.height, picture.width)
    return image, mask

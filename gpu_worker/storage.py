"""What the worker reads and writes: source images in, PNG originals and WebP thumbnails out."""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from PIL import Image as PILImage

from generations.models import Generation, Image, Upload
from generations.storage import open_content, save_content, save_variant, variant_path
from gpu_worker.encoders import png_with_parameters, webp_thumbnail
from gpu_worker.failures import GenerationFailed


def load_upload(upload: Upload | None) -> PILImage.Image | None:
    if upload is None:
        return None
    try:
        data = open_content(upload.file)
    except OSError as exc:
        raise GenerationFailed("input_missing") from exc
    return PILImage.open(io.BytesIO(data)).convert("RGB")


def store_images(generation: Generation, pictures: list[PILImage.Image]) -> list[Image]:
    """Write each picture's original (its parameters embedded) and thumbnail; the Image rows to
    save when the generation succeeds."""
    rows = []
    for index, picture in enumerate(pictures):
        seed = generation.seed + index
        original, digest = save_content(
            "images", png_with_parameters(picture, parameters(generation, seed)), "png"
        )
        thumbnail, sizes = store_thumbnails(picture)
        rows.append(
            Image(
                generation=generation,
                index=index,
                seed=seed,
                width=picture.width,
                height=picture.height,
                original=original,
                thumbnail=thumbnail,
                thumbnail_sizes=sizes,
                sha256=digest,
            )
        )
    return rows


def store_thumbnails(picture: PILImage.Image) -> tuple[str, list[int]]:
    """The smallest WebP thumbnail (content-addressed) and each larger size the picture reaches,
    named after it; returns its path and those larger sizes."""
    smallest, *larger = settings.ATELIER_THUMBNAIL_SIZES
    thumbnail, _ = save_content("thumbnails", webp_thumbnail(picture, smallest), "webp")
    sizes = [size for size in larger if max(picture.size) >= size]
    for size in sizes:
        save_variant(variant_path(thumbnail, size), webp_thumbnail(picture, size))
    return thumbnail, sizes


def parameters(generation: Generation, seed: int) -> dict[str, Any]:
    return {
        "prompt": generation.prompt,
        "negative_prompt": generation.negative_prompt,
        "model": generation.model_name,
        "kind": generation.kind,
        "width": generation.width,
        "height": generation.height,
        "steps": generation.steps,
        "guidance": generation.guidance,
        "sampler": generation.sampler,
        "seed": seed,
        "strength": generation.strength,
        "generation_id": str(generation.id),
    }

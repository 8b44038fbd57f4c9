"""What the worker reads and writes: source images in, PNG originals and WebP thumbnails out."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image as PILImage

from generations import thumbnails
from generations.models import Generation, Image, Upload
from generations.storage import open_content, save_content
from generations.thumbnails import Thumbnails
from gpu_worker.encoders import png_with_parameters
from gpu_worker.failures import GenerationFailed


def load_upload(upload: Upload | None) -> PILImage.Image | None:
    if upload is None:
        return None
    try:
        data = open_content(upload.file)
    except OSError as exc:
        raise GenerationFailed("input_missing") from exc
    return PILImage.open(io.BytesIO(data)).convert("RGB")


def store_images(
    generation: Generation, pictures: list[PILImage.Image], later: list[Thumbnails] | None
) -> list[Image]:
    """Write each picture's original (its parameters embedded); the Image rows to save when the
    generation succeeds. Its thumbnails are written now, or, given ``later``, added to it to be
    written once the generation has succeeded (generations/thumbnails.py)."""
    rows = []
    for index, picture in enumerate(pictures):
        seed = generation.seed + index
        original, digest = save_content(
            "images", png_with_parameters(picture, parameters(generation, seed)), "png"
        )
        rows.append(image_row(generation, index, seed, picture, original, digest, later))
    return rows


def image_row(
    generation: Generation,
    index: int,
    seed: int,
    picture: PILImage.Image,
    original: str,
    digest: str,
    later: list[Thumbnails] | None,
) -> Image:
    """The row of one stored original; its thumbnails planned (written now or added to ``later``)."""
    planned = thumbnails.plan(picture)
    if later is not None and thumbnails.written_later():
        later.append(planned)
    else:
        thumbnails.write(planned)
    return Image(
        generation=generation,
        index=index,
        seed=seed,
        width=picture.width,
        height=picture.height,
        original=original,
        thumbnail=planned.path,
        thumbnail_sizes=planned.sizes,
        sha256=digest,
    )


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

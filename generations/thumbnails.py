"""An image's WebP thumbnails, one per size of ATELIER_THUMBNAIL_SIZES its picture reaches.

They are named after the picture's pixels (``thumbnails/<aa>/<sha256 of mode, size and pixels>.webp``,
the larger sizes beside it: generations/storage.variant_path), so their names are known before a
pixel is encoded, and images that share pixels share every size.
That lets a worker on the filesystem store finish a job (the row, the terminal event) first and
write its thumbnails just after, before it takes its next job: encoding them cost a 512x512 job
more CPU than its PNG. A thumbnail asked for in that moment is made from the original on request;
the same pixels encode to the same bytes either way, and each file is written whole (one rename).
On S3 a redirect cannot make a missing object, so there the worker writes them before the finish.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from PIL import Image as PILImage

from generations.storage import is_remote, open_content, save_variant, variant_path


@dataclass(frozen=True)
class Thumbnails:
    """The thumbnails of one picture still to write: the smallest at ``path``, then ``sizes``."""

    picture: PILImage.Image
    path: str
    sizes: list[int]


def plan(picture: PILImage.Image) -> Thumbnails:
    larger = settings.ATELIER_THUMBNAIL_SIZES[1:]
    pixels = hashlib.sha256(f"{picture.mode} {picture.width}x{picture.height} ".encode())
    pixels.update(picture.tobytes())
    digest = pixels.hexdigest()
    path = f"thumbnails/{digest[:2]}/{digest}.webp"
    return Thumbnails(picture, path, [size for size in larger if max(picture.size) >= size])


def write(thumbnails: Thumbnails) -> None:
    """Each size not stored yet (pictures with the same pixels share them: encoded once)."""
    sides = [(thumbnails.path, settings.ATELIER_THUMBNAIL_SIZES[0])]
    sides += [(variant_path(thumbnails.path, size), size) for size in thumbnails.sizes]
    for path, side in sides:
        save_variant(path, partial(webp_thumbnail, thumbnails.picture, side))


def written_later() -> bool:
    """Whether the worker writes thumbnails after the finish (the filesystem store)."""
    return not is_remote()


def read(original: str, path: str, side: int) -> bytes:
    """The thumbnail file at ``path`` (longest side ``side``) of the image whose original is at
    ``original``; made from the original when its worker has not written it yet."""
    try:
        return open_content(path)
    except FileNotFoundError:
        if not written_later():
            raise
    data = webp_thumbnail(PILImage.open(io.BytesIO(open_content(original))), side)
    save_variant(path, lambda: data)
    return data


def webp_thumbnail(image: PILImage.Image, max_side: int = 256) -> bytes:
    thumbnail = image.copy()
    # reducing_gap: an exact halving (512 -> 256) by a box average first, far cheaper than a
    # Lanczos pass over the whole picture and as good for a downscale by two.
    thumbnail.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS, reducing_gap=1.0)
    if thumbnail.mode not in ("RGB", "RGBA"):
        thumbnail = thumbnail.convert("RGB")
    buffer = io.BytesIO()
    # method 2 of 0-6: same quality setting, a little less search for a smaller file, a third faster.
    thumbnail.save(buffer, "WEBP", quality=80, method=2)
    return buffer.getvalue()

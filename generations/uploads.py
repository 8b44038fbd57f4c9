"""Input images: checked before they are decoded, then re-encoded so no metadata survives."""

from __future__ import annotations

import io
import warnings
from typing import Protocol

from django.conf import settings
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from core.errors import ApiError


def invalid_file(message: str, field: str = "file") -> ApiError:
    return ApiError("validation_error", f"Invalid field(s): {field}. {message}", {field: [message]})


class Readable(Protocol):
    size: int | None

    def read(self, size: int = -1) -> bytes: ...


def read_upload(file: Readable, field: str = "file") -> bytes:
    """An uploaded file's bytes, never more than the cap: a larger file is refused unread."""
    cap = settings.ATELIER_UPLOAD_MAX_BYTES
    if (file.size or 0) > cap:
        raise invalid_file(f"The file is larger than {cap} bytes.", field)
    data = file.read(cap + 1)
    if len(data) > cap:
        raise invalid_file(f"The file is larger than {cap} bytes.", field)
    return data


def checked_image(data: bytes, field: str = "file") -> PILImage.Image:
    """The image in ``data``, decoded only after its format and size passed the checks that every
    image input gets: bytes, format allow-list, pixels (well under Pillow's own bomb limit)."""
    if len(data) > settings.ATELIER_UPLOAD_MAX_BYTES:
        raise invalid_file(f"The file is larger than {settings.ATELIER_UPLOAD_MAX_BYTES} bytes.", field)
    if not data:
        raise invalid_file("The file is empty.", field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            # open() reads only the header: format and size are checked before any pixel is decoded.
            image = PILImage.open(io.BytesIO(data), formats=settings.ATELIER_UPLOAD_FORMATS)
            width, height = image.size
            if width * height > settings.ATELIER_UPLOAD_MAX_PIXELS:
                message = f"The image has more than {settings.ATELIER_UPLOAD_MAX_PIXELS} pixels."
                raise invalid_file(message, field)
            image.load()
    except ApiError:
        raise
    except UnidentifiedImageError:
        allowed = ", ".join(settings.ATELIER_UPLOAD_FORMATS)
        raise invalid_file(f"The file is not an image in an accepted format ({allowed}).", field) from None
    except (
        OSError,
        SyntaxError,
        ValueError,
        PILImage.DecompressionBombError,
        PILImage.DecompressionBombWarning,
    ):
        raise invalid_file("The file is not a readable image.", field) from None
    return image


def clean_image(data: bytes) -> tuple[bytes, int, int]:
    """Validate an uploaded image and return it as PNG bytes with its size."""
    upright = ImageOps.exif_transpose(checked_image(data)).convert("RGB")
    out = io.BytesIO()
    upright.save(out, format="PNG")
    return out.getvalue(), upright.width, upright.height

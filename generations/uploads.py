"""Input images: checked before they are decoded, then re-encoded so no metadata survives."""

from __future__ import annotations

import io
import warnings

from django.conf import settings
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from core.errors import ApiError


def invalid_file(message: str) -> ApiError:
    return ApiError("validation_error", f"Invalid field(s): file. {message}", {"file": [message]})


def clean_image(data: bytes) -> tuple[bytes, int, int]:
    """Validate an uploaded image and return it as PNG bytes with its size."""
    if len(data) > settings.ATELIER_UPLOAD_MAX_BYTES:
        raise invalid_file(f"The file is larger than {settings.ATELIER_UPLOAD_MAX_BYTES} bytes.")
    if not data:
        raise invalid_file("The file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            # open() reads only the header: format and size are checked before any pixel is decoded.
            image = PILImage.open(io.BytesIO(data))
            if image.format not in settings.ATELIER_UPLOAD_FORMATS:
                allowed = ", ".join(settings.ATELIER_UPLOAD_FORMATS)
                raise invalid_file(f"Format {image.format} is not accepted; use {allowed}.")
            width, height = image.size
            if width * height > settings.ATELIER_UPLOAD_MAX_PIXELS:
                raise invalid_file(f"The image has more than {settings.ATELIER_UPLOAD_MAX_PIXELS} pixels.")
            image.load()
    except ApiError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        PILImage.DecompressionBombError,
        PILImage.DecompressionBombWarning,
    ):
        raise invalid_file("The file is not a readable image.") from None
    upright = ImageOps.exif_transpose(image).convert("RGB")
    out = io.BytesIO()
    upright.save(out, format="PNG")
    return out.getvalue(), upright.width, upright.height

"""Images made directly in the database, for gallery tests that need no worker."""

from __future__ import annotations

import io
import itertools
from datetime import datetime
from typing import Any

from django.utils import timezone
from PIL import Image as PILImage

from accounts.models import User
from generations.models import Generation, GenerationStatus, Image
from generations.storage import save_content

_colors = itertools.count(1)


def png_bytes(width: int = 64, height: int = 64, color: tuple[int, int, int] | None = None) -> bytes:
    shade = next(_colors) % 256
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), color or (shade, 100, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def make_image(
    user: User,
    prompt: str = "a red fox in the snow",
    *,
    public: bool = True,
    hidden: bool = False,
    size: int = 64,
    created_at: datetime | None = None,
    likes: int = 0,
    model: str = "atelier-demo",
    **fields: Any,
) -> Image:
    created_at = created_at or timezone.now()
    generation = Generation.objects.create(
        user=user,
        status=GenerationStatus.SUCCEEDED,
        model_name=model,
        pool="tiny",
        lane="standard",
        prompt=prompt,
        width=size,
        height=size,
        steps=6,
        guidance=7.0,
        seed=42,
        is_public=public,
        created_at=created_at,
    )
    original, digest = save_content("images", png_bytes(size, size), "png")
    image = Image.objects.create(
        generation=generation,
        index=0,
        seed=42,
        width=size,
        height=size,
        original=original,
        thumbnail=original,
        sha256=digest,
        created_at=created_at,
        like_count=likes,
        hidden=hidden,
        **fields,
    )
    return image

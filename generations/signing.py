"""Short-lived signed URLs for image files, for clients that fetch without credentials."""

from __future__ import annotations

from django.core import signing
from django.urls import reverse

from generations.models import Image

SALT = "atelier.image-url"


def signed_image_url(image: Image, variant: str = "content", max_age: int = 3600) -> str:
    token = signing.dumps({"image": str(image.id), "variant": variant, "max_age": max_age}, salt=SALT)
    name = "api_image_content" if variant == "content" else "api_image_thumbnail"
    return f"{reverse(name, args=[image.id])}?signature={token}"


def signed_image_id(token: str, variant: str) -> str | None:
    """The image id a valid, unexpired signature grants, for this variant; else None."""
    try:
        unverified = signing.loads(token, salt=SALT)
        data = signing.loads(token, salt=SALT, max_age=int(unverified.get("max_age", 3600)))
    except (signing.BadSignature, ValueError, TypeError, AttributeError):
        return None
    if data.get("variant") != variant:
        return None
    return str(data["image"])

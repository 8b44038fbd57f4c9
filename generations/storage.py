"""Media files, content-addressed, through Django's storage API: the filesystem by default, any
S3-compatible store when `ATELIER_S3_BUCKET` is set (see config/settings.py).

On S3, objects are private; clients get short-lived presigned URLs for private images, and a
published image's objects are made public-read with a year-long Cache-Control, so their plain URLs
can be cached by anyone (and they are made private again when unpublished or hidden).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage


def save_content(folder: str, data: bytes, extension: str) -> tuple[str, str]:
    """Store ``data`` under its SHA-256 and return (path, sha256). Storing twice is harmless."""
    digest = hashlib.sha256(data).hexdigest()
    path = f"{folder}/{digest[:2]}/{digest}.{extension}"
    if not default_storage.exists(path):
        default_storage.save(path, ContentFile(data))
    return path, digest


def open_content(path: str) -> bytes:
    with default_storage.open(path, "rb") as handle:
        return bytes(handle.read())


def delete_content(path: str) -> None:
    if default_storage.exists(path):
        default_storage.delete(path)


PUBLIC_CACHE = "public, max-age=31536000, immutable"
PRIVATE_CACHE = "private, max-age=3600"


def is_remote() -> bool:
    return hasattr(default_storage, "bucket_name")


def presigned_url(path: str, *, download_name: str | None = None) -> str:
    parameters = None
    if download_name:
        parameters = {"ResponseContentDisposition": f'attachment; filename="{download_name}"'}
    storage: Any = default_storage  # S3Storage.url takes extra response parameters
    return str(storage.url(path, parameters=parameters))


def public_url(path: str) -> str:
    storage: Any = default_storage
    client = storage.connection.meta.client
    return str(client.meta.endpoint_url).rstrip("/") + f"/{storage.bucket_name}/{path}"


def sync_visibility(images: Iterable[Any]) -> None:
    """After images were published, unpublished, hidden or shown (and saved): their objects
    follow (S3 only). Objects are content-addressed, so one may serve several images, of several
    owners: it is public while any image that uses it may be seen, whichever changed."""
    if not is_remote():
        return
    from django.db.models import Q

    from generations.models import EXPLORE_VISIBLE, Image

    paths = {path for image in images for path in (image.original, image.thumbnail) if path}
    uses = Image.objects.filter(EXPLORE_VISIBLE).filter(Q(original__in=paths) | Q(thumbnail__in=paths))
    shown = {path for pair in uses.values_list("original", "thumbnail") for path in pair}
    for path in sorted(paths):
        set_public([path], path in shown)


def set_public(paths: list[str], public: bool) -> None:
    """Make objects world-readable with a long cache life, or private again (S3 only)."""
    if not is_remote():
        return
    storage: Any = default_storage
    client = storage.connection.meta.client
    for path in paths:
        client.copy_object(
            Bucket=storage.bucket_name,
            Key=path,
            CopySource={"Bucket": storage.bucket_name, "Key": path},
            MetadataDirective="REPLACE",
            CacheControl=PUBLIC_CACHE if public else PRIVATE_CACHE,
            ContentType="image/png" if path.endswith(".png") else "image/webp",
            ACL="public-read" if public else "private",
        )

"""Media files, content-addressed, through Django's storage API: the filesystem by default, any
S3-compatible store when `ATELIER_S3_BUCKET` is set (see config/settings.py).

On S3, objects are private; clients get short-lived presigned URLs for private images, and a
published image's objects are made public-read with a year-long Cache-Control, so their plain URLs
can be cached by anyone (and they are made private again when unpublished or hidden).

Originals have two tiers (generations/tiers.py decides what moves): on S3 the same key in a colder
storage class, on the filesystem the same path under a second folder (the cold root). Reading
falls back to the cold folder, so every reader finds a file in either tier.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, default_storage


def save_content(folder: str, data: bytes, extension: str) -> tuple[str, str]:
    """Store ``data`` under its SHA-256 and return (path, sha256). Storing twice is harmless."""
    digest = hashlib.sha256(data).hexdigest()
    path = f"{folder}/{digest[:2]}/{digest}.{extension}"
    if not default_storage.exists(path):
        default_storage.save(path, ContentFile(data))
    return path, digest


def save_variant(path: str, make: Callable[[], bytes]) -> None:
    """Store ``make()``'s bytes under a name derived from a content-addressed one (a thumbnail and
    its larger sizes), unless a file of that name is there already. Two writers of the same name (a
    worker and a request that made it first) write the same bytes; on the filesystem each writes
    a whole file and renames it into place."""
    if is_remote():
        if not default_storage.exists(path):
            default_storage.save(path, ContentFile(make()))
        return
    target = Path(default_storage.path(path))
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    partial.write_bytes(make())
    os.replace(partial, target)


def variant_path(thumbnail: str, size: int) -> str:
    """Where a thumbnail's copy with this longest side lives: named after the smallest one, which
    is named after the pixels, so images that share pixels share every size."""
    stem, dot, extension = thumbnail.rpartition(".")
    return f"{stem}-{size}{dot}{extension}"


def base_of_variant(path: str) -> str:
    """The smallest thumbnail a variant path was named after (the path itself when it is one)."""
    stem, dot, extension = path.rpartition(".")
    name, dash, size = stem.rpartition("-")
    return f"{name}{dot}{extension}" if dash and size.isdigit() else path


def open_content(path: str) -> bytes:
    try:
        return _read(default_storage, path)
    except FileNotFoundError:
        if is_remote() or not cold_storage().exists(path):
            raise
        return _read(cold_storage(), path)  # an original in the cold tier, read where it is


def _read(storage: Storage, path: str) -> bytes:
    with storage.open(path, "rb") as handle:
        return bytes(handle.read())


def delete_content(path: str) -> None:
    """Remove a file from whichever tier holds it."""
    for storage in (default_storage,) if is_remote() else (default_storage, cold_storage()):
        if storage.exists(path):
            storage.delete(path)


def cold_storage() -> FileSystemStorage:
    """The filesystem's cold tier: the same paths under ATELIER_COLD_MEDIA_ROOT."""
    return FileSystemStorage(location=settings.ATELIER_COLD_MEDIA_ROOT or f"{settings.MEDIA_ROOT}-cold")


def move_to_cold(path: str, *, public: bool) -> None:
    if is_remote():
        rewrite_object(path, public=public, cold=True)
    else:
        _move(path, default_storage, cold_storage())


def move_to_hot(path: str, *, public: bool) -> None:
    if is_remote():
        rewrite_object(path, public=public, cold=False)
    else:
        _move(path, cold_storage(), default_storage)


def _move(path: str, source: Storage, target: Storage) -> None:
    """Copy first, then delete: a crash in between leaves the file in both tiers, never in none."""
    if not source.exists(path):
        return
    if not target.exists(path):
        target.save(path, ContentFile(_read(source, path)))
    source.delete(path)


def storage_class(path: str) -> str:
    """The S3 storage class of an object (STANDARD when S3 names none)."""
    storage: Any = default_storage
    head = storage.connection.meta.client.head_object(Bucket=storage.bucket_name, Key=path)
    return str(head.get("StorageClass", "STANDARD"))


def stored_files(folder: str) -> Iterator[tuple[str, datetime]]:
    """Every file under a folder, in both tiers, with when it was written."""
    if is_remote():
        storage: Any = default_storage
        pages = storage.connection.meta.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=storage.bucket_name, Prefix=f"{folder}/"):
            for item in page.get("Contents", []):
                yield item["Key"], item["LastModified"]
        return
    for tier in (default_storage, cold_storage()):
        root = Path(tier.path(""))
        for directory, _, names in os.walk(root / folder):
            for name in names:
                full = Path(directory) / name
                written = datetime.fromtimestamp(full.stat().st_mtime, tz=UTC)
                yield full.relative_to(root).as_posix(), written


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


def image_files(image: Any) -> list[str]:
    """An image's files: the original, the smallest thumbnail and its larger sizes."""
    sizes = image.thumbnail_sizes or []
    return [image.original, image.thumbnail, *(variant_path(image.thumbnail, size) for size in sizes)]


def shown_paths(paths: set[str]) -> set[str]:
    """Which of these files some image that anyone may see uses (content addressing shares a file
    between images, of several owners, so the file is public while any of them is seen)."""
    from django.db.models import Q

    from generations.models import EXPLORE_VISIBLE, Image

    bases = {base_of_variant(path) for path in paths}
    uses = Image.objects.filter(EXPLORE_VISIBLE).filter(Q(original__in=paths) | Q(thumbnail__in=bases))
    return {path for image in uses for path in image_files(image)} & paths


def sync_visibility(images: Iterable[Any]) -> None:
    """After images were published, unpublished, hidden, shown or deleted (and saved): their
    objects follow (S3 only), each in the storage tier it is in."""
    if not is_remote():
        return
    from generations.models import Image

    images = list(images)
    paths = {path for image in images for path in image_files(image) if path}
    shown = shown_paths(paths)
    originals = {image.original for image in images}
    cold = set(Image.all_objects.filter(original__in=originals, cold=True).values_list("original", flat=True))
    for path in sorted(paths):
        rewrite_object(path, public=path in shown, cold=path in cold)


def rewrite_object(path: str, *, public: bool, cold: bool = False) -> None:
    """Copy an object onto itself: world-readable with a long cache life or private, in the cold
    storage class or the standard one (S3 only; a copy is the only way S3 changes either)."""
    storage: Any = default_storage
    storage.connection.meta.client.copy_object(
        Bucket=storage.bucket_name,
        Key=path,
        CopySource={"Bucket": storage.bucket_name, "Key": path},
        MetadataDirective="REPLACE",
        CacheControl=PUBLIC_CACHE if public else PRIVATE_CACHE,
        ContentType="image/png" if path.endswith(".png") else "image/webp",
        ACL="public-read" if public else "private",
        StorageClass=settings.ATELIER_S3_COLD_STORAGE_CLASS if cold else "STANDARD",
    )

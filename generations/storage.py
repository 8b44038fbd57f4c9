"""Media files, content-addressed, through Django's storage API (filesystem now, S3 later)."""

from __future__ import annotations

import hashlib

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

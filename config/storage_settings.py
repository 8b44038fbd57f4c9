"""Storage tiers, deletion and thumbnails (generations/tiers.py, generations/retention.py);
config/settings.py takes every name from here."""

from __future__ import annotations

from core.env import env_float, env_int, env_list, env_str

# An original not viewed for this many days moves to the cold tier (0: never); a view brings it back.
ATELIER_COLD_AFTER_DAYS = env_float("ATELIER_COLD_AFTER_DAYS", 30.0)
# The cold tier: on S3, the same key in this storage class; on the filesystem, this folder
# (default: MEDIA_ROOT's sibling "<MEDIA_ROOT>-cold").
ATELIER_S3_COLD_STORAGE_CLASS = env_str("ATELIER_S3_COLD_STORAGE_CLASS", "STANDARD_IA")
ATELIER_COLD_MEDIA_ROOT = env_str("ATELIER_COLD_MEDIA_ROOT", "")
# A deleted image vanishes at once; its row and files are purged this many days later.
ATELIER_DELETED_RETENTION_DAYS = env_float("ATELIER_DELETED_RETENTION_DAYS", 7.0)
# A stored file that no row names (a finish that failed after writing) is removed once this old.
ATELIER_ORPHAN_AGE_HOURS = env_float("ATELIER_ORPHAN_AGE_HOURS", 24.0)
# The dispatcher runs these storage duties at most this often, each on at most this many rows.
ATELIER_STORAGE_SWEEP_SECONDS = env_float("ATELIER_STORAGE_SWEEP_SECONDS", 300.0)
ATELIER_STORAGE_BATCH = env_int("ATELIER_STORAGE_BATCH", 500)
# Longest sides of the WebP thumbnails the worker makes (the smallest one always; each larger one
# where the image is at least that large); pages offer them in `srcset`.


def _sizes(name: str, default: str) -> list[int]:
    try:
        sizes = sorted({int(size) for size in env_list(name, default)})
    except ValueError as exc:
        raise ValueError(f"{name} must be comma-separated integers, e.g. {default}") from exc
    if not sizes or sizes[0] < 16:
        raise ValueError(f"{name} must name at least one size of 16 pixels or more")
    return sizes


ATELIER_THUMBNAIL_SIZES = _sizes("ATELIER_THUMBNAIL_SIZES", "256,512,1024")

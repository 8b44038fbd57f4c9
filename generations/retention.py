"""Deleting images lazily, purging them later, collecting files no row names, and the
dispatcher's storage sweep that runs these (and the storage tiers) beside its loop.

A deleted image vanishes at once: its row is marked (``Image.objects`` hides it from every list,
page and file URL) and its S3 objects turn private. The dispatcher purges the row and its files
ATELIER_DELETED_RETENTION_DAYS later. Files are content-addressed and shared (the result cache
points new images at them; thumbnails are named after the pixels), so a file goes only when no
remaining image or upload names it.

A worker writes files before it commits their rows; a finish that fails in between leaves files
that no row names. Once older than ATELIER_ORPHAN_AGE_HOURS (far longer than any finish) they
are removed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from generations.models import Image, Upload
from generations.storage import base_of_variant, delete_content, image_files, stored_files, sync_visibility
from generations.tiers import move_idle_to_cold, record_views

log = logging.getLogger(__name__)

COLLECTED_FOLDERS = ("images", "thumbnails")  # uploads and workflow temp files live elsewhere


def mark_deleted(image: Image) -> bool:
    """Delete an image as its owner sees it, at once; False when it was deleted already."""
    with transaction.atomic():
        changed = Image.all_objects.filter(pk=image.pk, deleted_at=None).update(deleted_at=timezone.now())
    if changed:
        image.deleted_at = timezone.now()
        sync_visibility([image])  # its objects turn private unless another visible image uses them
    return bool(changed)


def purge_deleted(now: datetime | None = None) -> int:
    """Remove the images deleted longer ago than the retention period, and every file of theirs
    no remaining row names. Returns the images purged."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.ATELIER_DELETED_RETENTION_DAYS)
    expired = Image.all_objects.filter(deleted_at__lt=cutoff).order_by("deleted_at")
    doomed = list(expired[: settings.ATELIER_STORAGE_BATCH])
    if not doomed:
        return 0
    paths = {path for image in doomed for path in image_files(image)}
    Image.all_objects.filter(pk__in=[image.pk for image in doomed]).delete()
    remove_unnamed(paths)
    return len(doomed)


def named(paths: Iterable[str]) -> set[str]:
    """Which of these paths some image (deleted or not, until purged) or upload names."""
    paths = set(paths)
    bases = {base_of_variant(path) for path in paths}
    originals = set(Image.all_objects.filter(original__in=paths).values_list("original", flat=True))
    uploads = set(Upload.objects.filter(file__in=paths).values_list("file", flat=True))
    thumbnails = set(Image.all_objects.filter(thumbnail__in=bases).values_list("thumbnail", flat=True))
    return {p for p in paths if p in originals or p in uploads or base_of_variant(p) in thumbnails}


def remove_unnamed(paths: set[str]) -> int:
    unnamed = sorted(paths - named(paths))
    for path in unnamed:
        delete_content(path)
    return len(unnamed)


def collect_orphans(now: datetime | None = None) -> int:
    """Remove stored originals and thumbnails, in either tier, that no row names and that are
    older than ATELIER_ORPHAN_AGE_HOURS. Returns the files removed."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.ATELIER_ORPHAN_AGE_HOURS)
    removed = 0
    for folder in COLLECTED_FOLDERS:
        batch: set[str] = set()
        for path, written in stored_files(folder):
            if written < cutoff:
                batch.add(path)
            if len(batch) >= settings.ATELIER_STORAGE_BATCH:
                removed += remove_unnamed(batch)
                batch = set()
        removed += remove_unnamed(batch)
    return removed


@dataclass
class StorageSweep:
    views_recorded: int = 0
    moved_cold: int = 0
    purged: int = 0
    orphans_removed: int = 0


def sweep_storage() -> StorageSweep:
    """One pass of every storage duty; a failing one is logged and the others still run."""
    sweep = StorageSweep()
    duties: dict[str, Callable[[], int]] = {
        "views_recorded": record_views,
        "moved_cold": move_idle_to_cold,
        "purged": purge_deleted,
        "orphans_removed": collect_orphans,
    }
    for name, duty in duties.items():
        try:
            setattr(sweep, name, duty())
        except Exception:  # a store or Redis hiccup: the next sweep tries again
            log.exception("storage duty %s failed", name)
    return sweep


_sweeper: threading.Thread | None = None
_next_sweep = 0.0


def sweep_storage_now_and_then() -> bool:
    """Start a storage sweep at most every ATELIER_STORAGE_SWEEP_SECONDS, in its own thread: listing
    a large bucket must not hold up the dispatcher's other duties. True when one was started."""
    global _sweeper, _next_sweep
    if time.monotonic() < _next_sweep or (_sweeper is not None and _sweeper.is_alive()):
        return False
    _next_sweep = time.monotonic() + settings.ATELIER_STORAGE_SWEEP_SECONDS
    _sweeper = threading.Thread(target=_sweep_in_thread, name="storage-sweep")
    _sweeper.start()
    return True


def _sweep_in_thread() -> None:
    try:
        sweep = sweep_storage()
        if any(vars(sweep).values()):
            log.info("storage sweep: %s", sweep)
    finally:
        connections.close_all()  # this thread's own connections

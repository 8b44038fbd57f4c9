"""Storage tiers: originals nobody viewed for ATELIER_COLD_AFTER_DAYS move to the cold tier (an S3
storage class, or a second folder) and come back when someone views them.

A view costs one Redis write, never a database write: `note_view` keeps the latest view time per
image in a Redis hash, and the dispatcher moves the whole hash into ``Image.last_viewed_at`` in one
batch (`record_views`) before it decides what is cold. Files are content-addressed, so one original
may serve several images: it goes cold only when none of its images was viewed lately, and a view
of any of them brings it back for all.

Only originals move: thumbnails are small and every list shows them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Max
from django.db.models.functions import Coalesce
from django.utils import timezone
from redis.exceptions import RedisError

from core.redis import redis_client
from generations.models import Image
from generations.storage import move_to_cold, move_to_hot, shown_paths

log = logging.getLogger(__name__)

VIEWS_KEY = "atelier:image-views"  # a hash: image id -> the epoch seconds of its latest view
FLUSHING_KEY = "atelier:image-views:flushing"


def note_view(image: Image) -> None:
    """Someone fetched the image's original: remember when (cheaply), and bring it back from the
    cold tier first if it is there."""
    if image.cold:
        bring_back(image.original)
    try:
        redis_client().hset(VIEWS_KEY, str(image.id), f"{timezone.now().timestamp():.0f}")
    except RedisError as exc:  # a lost view only lets the image go cold a little early
        log.warning("could not note a view of image %s: %s", image.id, exc)


def bring_back(original: str) -> None:
    """Move an original back to the hot tier, for every image that uses it."""
    move_to_hot(original, public=bool(shown_paths({original})))
    Image.all_objects.filter(original=original).update(cold=False)


def record_views() -> int:
    """Write the views noted since the last call into ``last_viewed_at``, in one batch. Returns
    the images updated."""
    connection = redis_client()
    if not connection.exists(FLUSHING_KEY):  # else: a batch an earlier call did not finish
        if not connection.exists(VIEWS_KEY):
            return 0
        connection.rename(VIEWS_KEY, FLUSHING_KEY)  # new views land in a fresh hash meanwhile
    seen = {
        key.decode(): datetime.fromtimestamp(int(value), tz=UTC)
        for key, value in connection.hgetall(FLUSHING_KEY).items()
    }
    images = list(Image.all_objects.filter(pk__in=list(seen)).only("id", "last_viewed_at"))
    for image in images:
        image.last_viewed_at = max(seen[str(image.id)], image.last_viewed_at or seen[str(image.id)])
    Image.all_objects.bulk_update(images, ["last_viewed_at"], batch_size=500)
    connection.delete(FLUSHING_KEY)
    return len(images)


def move_idle_to_cold(now: datetime | None = None) -> int:
    """Move the originals that none of their images' viewers fetched for ATELIER_COLD_AFTER_DAYS
    (an image never viewed counts from its creation) to the cold tier. Returns the files moved."""
    if settings.ATELIER_COLD_AFTER_DAYS <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=settings.ATELIER_COLD_AFTER_DAYS)
    idle = (
        Image.all_objects.filter(cold=False)
        .values("original")
        .annotate(last_seen=Max(Coalesce("last_viewed_at", "created_at")))
        .filter(last_seen__lt=cutoff)
        .order_by("last_seen")
        .values_list("original", flat=True)[: settings.ATELIER_STORAGE_BATCH]
    )
    paths = set(idle)
    shown = shown_paths(paths)
    for path in sorted(paths):
        try:
            move_to_cold(path, public=path in shown)
        except Exception:  # the store refused (OSError, an S3 error): the next sweep tries again
            log.exception("could not move %s to the cold tier", path)
            continue
        Image.all_objects.filter(original=path).update(cold=True)
    return len(paths)

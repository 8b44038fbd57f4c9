"""The result cache: a request identical to a finished generation is answered from its images.

Identical means the same model weights (by content: `core.model_catalog.content_hash`), every
parameter that shapes the pixels, an explicit seed and the same input images (by content). The
answer is a new generation whose images point at the same content-addressed files (a file is
purged only when no image uses it any more: `generations.retention`; a generation with a
deleted image answers nothing).

A user is answered from their own generations and from public ones, never from another user's
private generation: that would tell them what someone else asked for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Count, Q
from redis.exceptions import RedisError

from core.model_catalog import ModelSpec, content_hash
from core.redis import redis_client
from generations.models import Generation, GenerationStatus

if TYPE_CHECKING:
    from accounts.models import User

log = logging.getLogger(__name__)

STATS_KEY = "atelier:result-cache"  # a hash of counters: hit, miss, bypass


def cache_key(model: ModelSpec, parameters: dict[str, Any]) -> str:
    """The key of the images these parameters make on this model ("" when the model's weights
    have no content hash: it is never cached). ``parameters`` hold every value that shapes the
    pixels, input images by their SHA-256 (`services.rendering_parameters`)."""
    if not settings.ATELIER_RESULT_CACHE:
        return ""
    weights = content_hash(model)
    if not weights:
        return ""
    identity = {**parameters, "weights": weights, "family": model.family}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def cached_source(*, user: User, key: str, n: int) -> Generation | None:
    """The latest finished generation this user may be answered from, with all its images."""
    if not key:
        count("bypass")
        return None
    source = (
        Generation.objects.filter(cache_key=key, status=GenerationStatus.SUCCEEDED)
        .filter(Q(user=user) | Q(is_public=True))
        .annotate(
            stored=Count("images", filter=Q(images__deleted_at=None)),
            hidden=Count("images", filter=Q(images__hidden=True)),
        )
        .filter(stored=n, hidden=0)
        .order_by("-finished_at")
        .first()
    )
    count("hit" if source else "miss")
    return source


def cached_charge(per_image: int) -> int:
    """What one cached image costs, in hundredths of credits."""
    return math.ceil(per_image * settings.ATELIER_RESULT_CACHE_CHARGE)


def count(outcome: str) -> None:
    try:
        redis_client().hincrby(STATS_KEY, outcome, 1)
    except RedisError as exc:  # a counter is not worth failing a submission for
        log.warning("could not count a result-cache %s: %s", outcome, exc)


def stats() -> dict[str, int]:
    raw = redis_client().hgetall(STATS_KEY)
    counts = {key.decode(): int(value) for key, value in raw.items()}
    return {outcome: counts.get(outcome, 0) for outcome in ("hit", "miss", "bypass")}

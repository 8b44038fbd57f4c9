from __future__ import annotations

from django.conf import settings

from core.model_catalog import ModelSpec
from generations.queue_names import queue_name


def all_models() -> dict[str, ModelSpec]:
    return dict(settings.ATELIER_MODELS)


def get_model(name: str) -> ModelSpec | None:
    return settings.ATELIER_MODELS.get(name)


def default_model() -> ModelSpec:
    return settings.ATELIER_MODELS[settings.ATELIER_DEFAULT_MODEL]


def lanes_for_pools(pools: list[str]) -> list[str]:
    """Queue names a worker listens to: for each lane in priority order, each pool."""
    return [queue_name(pool, lane) for lane in settings.LANES for pool in pools]

"""Which models exist: those ATELIER_MODELS names (settings) and those operators added with
`manage.py models add` (InstalledModel rows, seen by every process as soon as they are added)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from core.env import env_str
from core.model_catalog import ModelSpec
from generations.models import InstalledModel
from generations.queue_names import queue_name


def models_dir() -> Path:
    """ATELIER_MODELS_DIR, where `models add` puts weights (default: ATELIER_DATA_DIR/models)."""
    return Path(env_str("ATELIER_MODELS_DIR", str(Path(settings.DATA_DIR) / "models")))


def in_models_dir(path: str) -> str:
    """A path as this machine finds it: relative ones are inside the models folder."""
    return str(models_dir() / path) if path and not Path(path).is_absolute() else path


def spec_of(row: InstalledModel) -> ModelSpec:
    fields = dict(row.options)
    if "examples" in fields:
        fields["examples"] = tuple(fields["examples"])
    return ModelSpec(
        name=row.name,
        path=in_models_dir(row.path),
        pool=row.pool,
        family=row.family,
        config=in_models_dir(row.config),
        **fields,
    )


def installed_models() -> dict[str, ModelSpec]:
    return {row.name: spec_of(row) for row in InstalledModel.objects.all()}


def all_models() -> dict[str, ModelSpec]:
    # A configured name wins: `models add` refuses it, but ATELIER_MODELS may gain it later.
    return {**installed_models(), **settings.ATELIER_MODELS}


def get_model(name: str) -> ModelSpec | None:
    spec = settings.ATELIER_MODELS.get(name)
    if spec is not None or not name:
        return spec
    row = InstalledModel.objects.filter(name=name).first()
    return spec_of(row) if row is not None else None


def default_model() -> ModelSpec:
    return settings.ATELIER_MODELS[settings.ATELIER_DEFAULT_MODEL]


def known_pools() -> list[str]:
    """Every pool a model names: workers may serve these, and each gets its queues."""
    configured = {spec.pool for spec in settings.ATELIER_MODELS.values()}
    installed = set(InstalledModel.objects.values_list("pool", flat=True).distinct())
    return sorted(configured | installed)


def lanes_for_pools(pools: list[str]) -> list[str]:
    """Queue names a worker listens to: for each lane in priority order, each pool."""
    return [queue_name(pool, lane) for lane in settings.LANES for pool in pools]

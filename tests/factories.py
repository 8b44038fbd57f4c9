"""Rows the tests need often, with the defaults of a small, quick job."""

from __future__ import annotations

from typing import Any

from accounts.models import User
from core.model_catalog import ModelSpec
from generations.models import Generation, GenerationStatus
from generations.registry import default_model


def queued_generation(user: User, **fields: Any) -> Generation:
    """A queued 64x64, 2-step generation of the default model (no credits held)."""
    model = default_model()
    values: dict[str, Any] = {
        "user": user,
        "model_name": model.name,
        "pool": model.pool,
        "lane": "standard",
        "prompt": "a boat",
        "width": 64,
        "height": 64,
        "steps": 2,
        "guidance": 5.0,
        "seed": 7,
        "status": GenerationStatus.QUEUED,
        **fields,
    }
    return Generation.objects.create(**values)


def private_pool_model(settings: Any, name: str = "tiny-private", **fields: Any) -> ModelSpec:
    """The built-in model in a pool of its own: the live tests' worker process serves the default
    pools, and would take jobs that a test means its in-process runner to find in RQ."""
    spec = ModelSpec(**{"name": name, "path": default_model().path, "pool": f"{name}-pool", **fields})
    settings.ATELIER_MODELS = {**settings.ATELIER_MODELS, spec.name: spec}
    return spec

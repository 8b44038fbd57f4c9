"""Staff pages beside the model admin: the live GPU workers and the queues they serve."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib import admin
from django.db.models import Min
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from core.redis import redis_client
from generations import queues
from generations.models import Generation, GenerationStatus
from generations.queue_names import queue_name
from generations.registry import known_pools
from generations.selectors import model_rows
from generations.workers import all_heartbeats

DEAD_LETTERS_QUERY = f"?status__exact={GenerationStatus.FAILED}"


@dataclass(frozen=True)
class WorkerRow:
    name: str
    pools: list[str]
    device: str
    models: list[str]
    warm_models: list[str]
    current_jobs: list[tuple[str, str]]  # (generation id, admin url): a batch runs several
    seconds_since_beat: float | None
    broken_plugins: dict[str, str] = field(default_factory=dict)  # node plugin -> why it was skipped


@dataclass(frozen=True)
class LaneRow:
    lane: str
    queue: str
    length: int
    oldest_seconds: float | None


@dataclass(frozen=True)
class PoolRow:
    pool: str
    lanes: list[LaneRow]


def live_workers(now: float | None = None) -> list[WorkerRow]:
    """Every worker whose heartbeat key has not expired, by name."""
    now = time.time() if now is None else now
    rows = []
    for name, state in all_heartbeats():
        jobs = [str(job) for job in state.get("current_jobs") or []]
        beat = state.get("at")
        rows.append(
            WorkerRow(
                name=name,
                pools=list(state.get("pools") or []),
                device=str(state.get("device") or ""),
                models=[str(m) for m in state.get("models") or []],
                warm_models=[str(m) for m in state.get("warm_models") or []],
                current_jobs=[
                    (job, reverse("admin:generations_generation_change", args=[job])) for job in jobs
                ],
                seconds_since_beat=max(0.0, now - float(beat)) if isinstance(beat, int | float) else None,
                broken_plugins={
                    str(k): str(v) for k, v in ((state.get("node_plugins") or {}).get("broken") or {}).items()
                },
            )
        )
    return rows


def pool_queues(pools: list[str]) -> list[PoolRow]:
    """RQ length of every lane of every pool, and how long its oldest queued job has waited there."""
    names = [(pool, lane) for pool in pools for lane in settings.LANES]
    pipe = redis_client().pipeline()
    for pool, lane in names:
        pipe.llen(queues.queue_key(queue_name(pool, lane)))
    lengths = dict(zip(names, pipe.execute(), strict=True))
    oldest = {
        (row["pool"], row["lane"]): row["oldest"]
        for row in Generation.objects.filter(status=GenerationStatus.QUEUED, pool__in=pools)
        .values("pool", "lane")
        .annotate(oldest=Min("lane_entered_at"))
    }
    now = timezone.now()
    return [
        PoolRow(
            pool=pool,
            lanes=[
                LaneRow(
                    lane=lane,
                    queue=queue_name(pool, lane),
                    length=int(lengths[(pool, lane)]),
                    oldest_seconds=(now - oldest[(pool, lane)]).total_seconds()
                    if (pool, lane) in oldest
                    else None,
                )
                for lane in settings.LANES
            ],
        )
        for pool in pools
    ]


PHASES = ("queue_wait", "load", "denoise", "save", "it_per_s", "batch")


@dataclass(frozen=True)
class PhaseRow:
    pool: str
    jobs: int
    means: dict[str, float | None]


def phase_timings(pools: list[str]) -> list[PhaseRow]:
    """Mean of each phase over the pool's recent finished jobs (the workers report them to Redis)."""
    rows = []
    for pool in pools:
        recent = queues.recent_job_metrics(pool)
        means: dict[str, float | None] = {}
        for phase in PHASES:
            values = [float(str(m[phase])) for m in recent if isinstance(m.get(phase), int | float)]
            means[phase] = sum(values) / len(values) if values else None
        rows.append(PhaseRow(pool=pool, jobs=len(recent), means=means))
    return rows


def workers(request: HttpRequest) -> HttpResponse:
    rows = live_workers()
    configured = set(known_pools())
    served = {pool for row in rows for pool in row.pools}
    context = {
        **admin.site.each_context(request),
        "title": "Workers and queues",
        "workers": rows,
        "pools": pool_queues(sorted(configured | served)),
        "phases": phase_timings(sorted(configured | served)),
        "model_events": queues.recent_model_events()[:20],
        "lanes": settings.LANES,
        "heartbeat_ttl": settings.ATELIER_HEARTBEAT_TTL,
        "dead_letters_url": reverse("admin:generations_generation_changelist") + DEAD_LETTERS_QUERY,
    }
    return TemplateResponse(request, "admin/workers.html", context)


def models_page(request: HttpRequest) -> HttpResponse:
    """Every model (ATELIER_MODELS, the built-in one, those `manage.py models add` installed):
    its pool, family, size, and the live workers that hold it now."""
    context = {**admin.site.each_context(request), "title": "Models", "models": model_rows()}
    return TemplateResponse(request, "admin/models.html", context)


# Staff only: anyone else is sent to the admin's login page.
workers_view = admin.site.admin_view(workers)
models_view = admin.site.admin_view(models_page)

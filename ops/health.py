"""Liveness and readiness for load balancers and orchestrators.

`/healthz`: the process answers (no dependency is touched). `/readyz`: the database, Redis and the
media storage answer (else 503 naming each failure), and every pool of the configured models has at
least one worker heartbeat and no model's circuit is open (else 200 with status "degraded" and the
reasons: the web tier can still take jobs, which wait in their queues). Degraded too while this
process sheds load (ops/load_shedding.py) or a dependency answers slower than ATELIER_READY_SLOW_MS.
Both probes pass the load-shedding limit, so they answer while requests are refused.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.http import HttpRequest, JsonResponse

from core.redis import redis_client
from generations.circuits import open_circuits
from generations.registry import all_models, known_pools
from generations.workers import live_worker_count
from ops.load_shedding import shedding


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_redis() -> None:
    redis_client().ping()


def check_storage() -> None:
    name = default_storage.save(f"readyz/{uuid.uuid4().hex}.txt", ContentFile(b"ok"))
    try:
        with default_storage.open(name, "rb") as handle:
            if handle.read() != b"ok":
                raise OSError("read back something else")
    finally:
        default_storage.delete(name)


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "redis": check_redis,
    "storage": check_storage,
}


def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, dict[str, object]] = {}
    failed = False
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
            checks[name] = {"ok": True}
        except Exception as exc:  # any failure of a dependency is a reason, not a crash
            failed = True
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        checks[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    reasons = [f"{name}: {check['error']}" for name, check in checks.items() if not check["ok"]]
    workers: dict[str, int] = {}
    if not checks["redis"]["ok"]:
        pools: list[str] = []
    else:
        pools = known_pools()
    for pool in pools:
        workers[pool] = live_worker_count(pool)
        if workers[pool] == 0:
            reasons.append(f"pool {pool}: no worker heartbeat in the last {settings.ATELIER_HEARTBEAT_TTL} s")
    if checks["redis"]["ok"]:
        for circuit in open_circuits(sorted(all_models())):
            reasons.append(
                f"model {circuit.model}: circuit {circuit.state.replace('_', '-')} ({circuit.reason})"
            )
    reasons += load_reasons(checks)
    status = "unavailable" if failed else ("degraded" if reasons else "ready")
    load = {"in_flight": shedding.in_flight, "waiting": shedding.waiting}
    body = {"status": status, "checks": checks, "workers": workers, "load": load, "reasons": reasons}
    return JsonResponse(body, status=503 if failed else 200)


def load_reasons(checks: dict[str, dict[str, object]]) -> list[str]:
    """Slow dependencies and recent shedding: the process still answers, with less."""
    slow = settings.ATELIER_READY_SLOW_MS
    reasons = [
        f"{name}: slow ({check['ms']} ms)"
        for name, check in checks.items()
        if check["ok"] and float(str(check["ms"])) > slow
    ]
    ago = shedding.recently()
    if ago is not None:
        reasons.append(f"overloaded: requests shed {ago:.0f} s ago (503 with Retry-After)")
    return reasons

"""Prometheus `/metrics`, computed from the shared state (PostgreSQL and Redis), so any web process
answers for the whole deployment. Protected by `ATELIER_METRICS_TOKEN` (a Bearer token) or, without
one, by the `ATELIER_METRICS_ALLOW` address list (loopback by default).
"""

from __future__ import annotations

import hmac
import time
from collections import defaultdict
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse

from billing.models import BillingAccount
from core.client import client_ip
from core.redis import redis_client
from generations import circuits, result_cache
from generations.admin_views import live_workers, phase_timings, pool_queues
from generations.models import Generation, GenerationStatus
from generations.publisher import thinned_counts
from generations.registry import all_models, known_pools
from ops.load_shedding import shed_counts
from ops.requests import BUCKETS, HTTP_KEY, stats
from webhooks.models import WebhookDelivery

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def allowed(request: HttpRequest) -> bool:
    token = settings.ATELIER_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), token.encode())
    return client_ip(request) in settings.ATELIER_METRICS_ALLOW


def metrics(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    stats.flush()  # this process's last second of requests too
    return HttpResponse("".join(f"{line}\n" for line in exposition()), content_type=CONTENT_TYPE)


def escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label(**labels: object) -> str:
    inner = ",".join(f'{key}="{escape(value)}"' for key, value in labels.items())
    return "{" + inner + "}" if inner else ""


def family(name: str, kind: str, help_text: str) -> Iterator[str]:
    yield f"# HELP {name} {help_text}"
    yield f"# TYPE {name} {kind}"


def exposition() -> Iterator[str]:
    yield from http_requests()
    yield from queue_metrics()
    yield from job_metrics()
    yield from worker_metrics()
    yield from webhook_metrics()
    yield from credit_metrics()
    yield from resilience_metrics()
    yield from load_metrics()


def http_requests() -> Iterator[str]:
    raw = redis_client().hgetall(HTTP_KEY)
    series: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    for field, value in raw.items():
        method, route, status, part = field.decode().split("|")
        series[(method, route, status)][part] = float(value)
    yield from family("atelier_http_request_duration_seconds", "histogram", "Requests by route and status.")
    for (method, route, status), parts in sorted(series.items()):
        labels = {"method": method, "route": route or "/", "status": status}
        cumulative = 0.0
        for bucket in [*map(str, BUCKETS), "+Inf"]:
            cumulative += parts.get(bucket, 0.0)
            yield f"atelier_http_request_duration_seconds_bucket{label(**labels, le=bucket)} {cumulative:g}"
        yield f"atelier_http_request_duration_seconds_sum{label(**labels)} {parts.get('sum', 0.0):.6f}"
        yield f"atelier_http_request_duration_seconds_count{label(**labels)} {parts.get('count', 0.0):g}"


def pools() -> list[str]:
    return known_pools()


def queue_metrics() -> Iterator[str]:
    rows = [(row.pool, lane) for row in pool_queues(pools()) for lane in row.lanes]
    yield from family("atelier_queue_depth", "gauge", "Jobs waiting in each RQ queue.")
    for pool, lane in rows:
        yield f"atelier_queue_depth{label(pool=pool, lane=lane.lane)} {lane.length}"
    yield from family(
        "atelier_queue_oldest_job_seconds", "gauge", "How long the oldest queued job has waited."
    )
    for pool, lane in rows:
        age = lane.oldest_seconds or 0.0
        yield f"atelier_queue_oldest_job_seconds{label(pool=pool, lane=lane.lane)} {age:.3f}"
    pending = Generation.objects.filter(status=GenerationStatus.PENDING).count()
    yield from family("atelier_pending_jobs", "gauge", "Jobs held back by fair-use caps or retry backoff.")
    yield f"atelier_pending_jobs {pending}"


def job_metrics() -> Iterator[str]:
    counts = dict(Generation.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    yield from family("atelier_jobs", "gauge", "Generations by status (terminal ones are outcomes).")
    for status in GenerationStatus.values:
        yield f"atelier_jobs{label(status=status)} {counts.get(status, 0)}"
    yield from family(
        "atelier_job_phase_seconds", "gauge", "Mean seconds per job phase, recent jobs per pool."
    )
    for row in phase_timings(pools()):
        for phase, mean in row.means.items():
            if mean is not None:
                yield f"atelier_job_phase_seconds{label(pool=row.pool, phase=phase)} {mean:.6f}"


def worker_metrics() -> Iterator[str]:
    rows = live_workers(time.time())
    workers: dict[str, int] = defaultdict(int)
    busy: dict[str, int] = defaultdict(int)
    for row in rows:
        for pool in row.pools:
            workers[pool] += 1
            busy[pool] += 1 if row.current_jobs else 0
    yield from family("atelier_workers", "gauge", "Live GPU workers (heartbeat) per pool.")
    for pool in sorted(set(pools()) | set(workers)):
        yield f"atelier_workers{label(pool=pool)} {workers[pool]}"
    yield from family(
        "atelier_workers_busy_fraction", "gauge", "Share of a pool's live workers running jobs."
    )
    for pool, count in sorted(workers.items()):
        fraction = busy[pool] / count if count else 0.0
        yield f"atelier_workers_busy_fraction{label(pool=pool)} {fraction:.4f}"


def webhook_metrics() -> Iterator[str]:
    counts = dict(
        WebhookDelivery.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    yield from family("atelier_webhook_deliveries", "gauge", "Webhook deliveries by outcome.")
    for status in ("pending", "succeeded", "failed"):
        yield f"atelier_webhook_deliveries{label(status=status)} {counts.get(status, 0)}"


def credit_metrics() -> Iterator[str]:
    held = BillingAccount.objects.aggregate(total=Sum("held"))["total"] or 0
    yield from family("atelier_credits_held", "gauge", "Credits held by unfinished generations.")
    yield f"atelier_credits_held {held / 100:.2f}"


def resilience_metrics() -> Iterator[str]:
    counts = result_cache.stats()
    yield from family(
        "atelier_result_cache_requests_total",
        "counter",
        "Submissions by result-cache outcome: hit, miss (seeded, nothing to reuse), bypass (not cacheable).",
    )
    for outcome, value in counts.items():
        yield f"atelier_result_cache_requests_total{label(outcome=outcome)} {value}"
    looked_up = counts["hit"] + counts["miss"]
    yield from family("atelier_result_cache_hit_ratio", "gauge", "Hits among cacheable submissions.")
    yield f"atelier_result_cache_hit_ratio {counts['hit'] / looked_up if looked_up else 0.0:.4f}"
    models = sorted(all_models())
    states = {c.model: c.state for c in circuits.open_circuits(models)}
    yield from family("atelier_circuit_open", "gauge", "1 while a model's circuit is open or half-open.")
    for model in models:
        labels = label(model=model, state=states.get(model, "closed"))
        yield f"atelier_circuit_open{labels} {int(model in states)}"


def load_metrics() -> Iterator[str]:
    yield from counters(
        "atelier_events_thinned_total",
        "Event messages thinned while the event path lagged: previews left out, progress dropped.",
        "dropped",
        thinned_counts(),
    )
    yield from counters(
        "atelier_load_shed_total",
        "Requests answered 503 overloaded: over the concurrency limit, or the database or Redis too slow.",
        "reason",
        shed_counts(),
    )


def counters(name: str, help_text: str, label_name: str, counts: dict[str, int]) -> Iterator[str]:
    yield from family(name, "counter", help_text)
    for key, value in sorted(counts.items()):
        yield f"{name}{label(**{label_name: key})} {value}"


def parse(text: str) -> dict[str, float]:
    """`name{labels}` -> value, for tests and tools reading our own exposition."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values

"""Health, readiness, Prometheus metrics and structured logs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.test import Client
from django.utils import timezone

from accounts.models import User
from accounts.services import api_key_create
from billing.credits import account_for
from billing.models import BillingAccount
from core.model_catalog import ModelSpec
from generations import queues
from generations.models import Generation
from generations.registry import default_model
from generations.workers import pool_workers_key
from gpu_worker.heartbeat import Heartbeat
from ops.logs import JsonFormatter
from ops.metrics import parse
from ops.requests import HTTP_KEY, stats
from scripts.private_redis import free_port
from tests.conftest import ROOT, child_env, wait_for
from tests.factories import queued_generation

pytestmark = pytest.mark.django_db


@pytest.fixture
def heartbeat() -> Any:
    beat = Heartbeat("ops-test-worker", {"pools": [default_model().pool], "device": "cpu"})
    beat.current_jobs = ["some-job"]
    beat.start()
    yield beat
    beat.stop()


def test_healthz_says_the_process_answers(client: Client) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_ready_with_every_dependency_and_a_worker_per_pool(
    client: Client, heartbeat: Any, settings: Any
) -> None:
    settings.ATELIER_READY_SLOW_MS = 60_000  # a busy test machine is not a slow dependency
    body = client.get("/readyz").json()
    assert body["status"] == "ready", body
    assert all(check["ok"] for check in body["checks"].values())
    assert body["workers"][default_model().pool] >= 1


def test_readyz_is_degraded_without_workers(client: Client) -> None:
    queues.redis_client().delete(pool_workers_key(default_model().pool))
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "degraded"
    assert body["reasons"] == [f"pool {default_model().pool}: no worker heartbeat in the last 3 s"]


def test_readyz_names_each_dependency_that_is_down(tmp_path: Any) -> None:
    """A real web process whose database, Redis and media storage are all unreachable."""
    (tmp_path / "not-a-dir").write_text("a file where the media folder should be")
    env = {
        **child_env(),
        "DATABASE_URL": f"postgres://nobody@127.0.0.1:{free_port()}/gone",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "MEDIA_ROOT": str(tmp_path / "not-a-dir"),
    }
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(url + "/healthz", timeout=2).status_code == 200, 60, "web")
        response = requests.get(url + "/readyz", timeout=30)
    finally:
        web.terminate()
        web.wait()
    body = response.json()
    assert response.status_code == 503 and body["status"] == "unavailable"
    assert {name for name, check in body["checks"].items() if not check["ok"]} == {
        "database",
        "redis",
        "storage",
    }
    assert "OperationalError" in body["checks"]["database"]["error"]
    assert "ConnectionError" in body["checks"]["redis"]["error"]


def test_metrics_need_the_token_when_one_is_set(client: Client, settings: Any) -> None:
    settings.ATELIER_METRICS_TOKEN = "s3cret-scrape"
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape").status_code == 200


def test_metrics_from_other_addresses_are_refused_without_a_token(client: Client) -> None:
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403


def test_metrics_report_requests_queues_jobs_workers_and_holds(
    client: Client, heartbeat: Any, settings: Any
) -> None:
    stats.flush()
    queues.redis_client().delete(HTTP_KEY)  # count only this test's requests
    user = User.objects.create_user("metered")
    account = account_for(user)
    BillingAccount.objects.filter(pk=account.pk).update(balance=100_00)
    _, key = api_key_create(user=user)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    for prompt in ("one", "two"):
        response = api.post(
            "/api/v1/generations", {"prompt": prompt, "width": 64, "height": 64}, "application/json"
        )
        assert response.status_code == 202, response.content
    api.get("/api/v1/generations/not-a-uuid")
    api.get("/api/v1/no-such-thing")
    queued = Generation.objects.filter(user=user, status="queued").count()
    # A pool no live worker serves, so nothing drains its queue while we look.
    spare = ModelSpec(name="ops-model", path="/nowhere", pool="ops-pool")
    settings.ATELIER_MODELS = {**settings.ATELIER_MODELS, spare.name: spare}
    waiting = [
        queued_generation(
            user,
            model_name=spare.name,
            pool=spare.pool,
            lane="free",
            seed=i,
            lane_entered_at=timezone.now() - timedelta(seconds=30),
        )
        for i in range(3)
    ]
    queues.enqueue_many(waiting)

    response = client.get("/metrics")

    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain; version=0.0.4")
    values = parse(response.content.decode())
    pool = default_model().pool
    post = 'method="POST",route="api/v1/generations",status="202"'
    assert values[f"atelier_http_request_duration_seconds_count{{{post}}}"] == 2
    assert values[f'atelier_http_request_duration_seconds_bucket{{{post},le="+Inf"}}'] == 2
    assert any('route="api/v1/generations/<str:generation_id>",status="404"' in name for name in values)
    assert any('route="unmatched",status="404"' in name for name in values)
    assert values['atelier_queue_depth{pool="ops-pool",lane="free"}'] == 3
    assert values['atelier_queue_depth{pool="ops-pool",lane="priority"}'] == 0
    assert 30 <= values['atelier_queue_oldest_job_seconds{pool="ops-pool",lane="free"}'] < 120
    assert values['atelier_jobs{status="queued"}'] == queued + 3
    assert values["atelier_pending_jobs"] == 2 - queued  # beyond the plan's concurrency
    assert values[f'atelier_workers{{pool="{pool}"}}'] >= 1
    assert values[f'atelier_workers_busy_fraction{{pool="{pool}"}}'] > 0
    held = BillingAccount.objects.get(pk=account.pk).held / 100
    assert held > 0 and values["atelier_credits_held"] == pytest.approx(held)
    assert 'atelier_webhook_deliveries{status="failed"}' in values


def test_each_request_logs_one_json_line_with_its_id_and_no_secrets(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    user = User.objects.create_user("logged")
    account_for(user)
    _, key = api_key_create(user=user)
    with caplog.at_level(logging.INFO, logger="atelier.request"):
        response = client.get(
            "/api/v1/generations?limit=2",
            HTTP_AUTHORIZATION=f"Bearer {key}",
            HTTP_X_REQUEST_ID="req-abc-12345",
        )
    assert response["X-Request-ID"] == "req-abc-12345"
    (record,) = [r for r in caplog.records if r.name == "atelier.request"]
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["request_id"] == "req-abc-12345" and data["status"] == 200
    assert data["route"] == "api/v1/generations" and data["user_id"] == user.pk and data["ms"] > 0
    assert key not in line and key.split(".")[0] not in line and "limit=2" not in line
    made_up = client.get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces")["X-Request-ID"]
    assert made_up != "bad id with spaces" and len(made_up) == 32


def test_a_submission_keeps_the_id_of_its_request_for_the_workers_log_lines(client: Client) -> None:
    user = User.objects.create_user("traced")
    account_for(user)
    _, key = api_key_create(user=user)
    response = client.post(
        "/api/v1/generations",
        {"prompt": "traced", "width": 64, "height": 64, "steps": 2},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
        HTTP_X_REQUEST_ID="req-submit-77",
    )
    assert response.status_code == 202, response.content
    assert Generation.objects.get(pk=response.json()["id"]).request_id == "req-submit-77"


def test_worker_job_phases_are_logged_with_the_generation_id(caplog: pytest.LogCaptureFixture) -> None:
    from gpu_worker.runner import GenerationRunner

    user = User.objects.create_user("phased")
    generation = queued_generation(user, prompt="phases", request_id="req-submit-42")
    runner = GenerationRunner(name="phase-runner")
    try:
        with caplog.at_level(logging.INFO, logger="gpu_worker.runner"):
            runner.run_one(str(generation.id))
    finally:
        runner.publisher.close()
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if getattr(r, "phase", None)]
    assert [line["phase"] for line in lines] == ["started", "succeeded"]
    assert {line["generation_id"] for line in lines} == {str(generation.id)}
    assert {line["request_id"] for line in lines} == {"req-submit-42"}
    assert lines[1]["seconds"]["denoise"] > 0


def test_production_logs_are_json_lines() -> None:
    env = {
        **child_env(),
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "x" * 50,
        "DJANGO_ALLOWED_HOSTS": "a.example",
    }
    script = "import django, logging; django.setup(); logging.getLogger('probe').warning('hello %s', 'there')"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        check=True,
    )
    line = json.loads(done.stderr.strip().splitlines()[-1])
    assert (line["level"], line["logger"], line["message"]) == ("warning", "probe", "hello there")

"""The worker's single step, run in this process: claim once, finish once, fail with a code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from accounts.models import User
from generations.models import Generation, GenerationStatus, Image
from gpu_worker.runner import GenerationRunner
from tests.factories import queued_generation

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def runner() -> Iterator[GenerationRunner]:
    instance = GenerationRunner(name="test-runner")
    yield instance
    instance.publisher.close()


def queued(**fields: object) -> Generation:
    user, _ = User.objects.get_or_create(username="runner-user")
    return queued_generation(user, n=2, **fields)


def test_a_job_delivered_twice_runs_once(runner: GenerationRunner) -> None:
    generation = queued()
    assert runner.run_one(str(generation.id)) == GenerationStatus.SUCCEEDED
    assert runner.run_one(str(generation.id)) == "skipped"
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.SUCCEEDED
    assert Image.objects.filter(generation=generation).count() == 2
    assert generation.worker_name == "test-runner"


def test_a_job_canceled_while_queued_is_dropped(runner: GenerationRunner) -> None:
    generation = queued(status=GenerationStatus.CANCELED)
    assert runner.run_one(str(generation.id)) == "skipped"
    assert not Image.objects.filter(generation=generation).exists()


def test_an_unconfigured_model_fails_with_a_code(runner: GenerationRunner) -> None:
    generation = queued(model_name="retired-model")
    assert runner.run_one(str(generation.id)) == GenerationStatus.FAILED
    generation.refresh_from_db()
    assert generation.error_code == "model_unavailable"
    assert "retired-model" in generation.error_message
    assert generation.finished_at is not None


def test_a_missing_input_image_fails_with_a_code(runner: GenerationRunner) -> None:
    from generations.models import Upload

    upload = Upload.objects.create(
        user=User.objects.create(username="u2"), file="uploads/none.png", width=8, height=8, sha256="0"
    )
    generation = queued(input_upload=upload, strength=0.5, kind="img2img")
    assert runner.run_one(str(generation.id)) == GenerationStatus.FAILED
    generation.refresh_from_db()
    assert generation.error_code == "input_missing"


def test_a_jobs_events_read_the_webhook_endpoints_once(runner: GenerationRunner) -> None:
    """Started, a progress event for each of six steps and the finish: one read of the owner's
    webhook endpoints for the job, not one per event."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from webhooks.models import WebhookEndpoint

    generation = queued(steps=6)
    table = WebhookEndpoint._meta.db_table
    interval, runner.progress_interval = runner.progress_interval, 0.0
    try:
        with CaptureQueriesContext(connection) as queries:
            assert runner.run_one(str(generation.id)) == GenerationStatus.SUCCEEDED
    finally:
        runner.progress_interval = interval
    runner.publisher.flush()
    reads = [
        q["sql"] for q in queries.captured_queries if table in q["sql"] and q["sql"].startswith("SELECT")
    ]
    assert len(reads) == 1, reads

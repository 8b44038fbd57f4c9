"""A workflow job in the worker's single step, run in this process: it succeeds with its images
and outputs recorded and one unit captured; a transient error sends it back to wait; an executor
that ran out of time fails it with the timeout code; it never joins another job's batch."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.timeouts import JobTimeoutException

from accounts.models import User
from billing.credits import account_for
from billing.models import CreditEntry, EntryKind
from generations.models import Generation, GenerationStatus, Image
from generations.registry import default_model
from gpu_worker.runner import GenerationRunner
from gpu_worker.tiny_model import ensure_tiny_model
from tests.comfy_support import txt2img
from workflows.executor import Outcome
from workflows.services import submit_workflow

pytestmark = pytest.mark.django_db

MODEL = settings.ATELIER_DEFAULT_MODEL


@pytest.fixture(scope="module")
def runner() -> Iterator[GenerationRunner]:
    ensure_tiny_model(Path(default_model().path))
    instance = GenerationRunner(name="workflow-runner")
    yield instance
    instance.publisher.close()


def submitted(**changes: Any) -> Generation:
    user, _ = User.objects.get_or_create(username="workflow-user")
    return submit_workflow(user=user, prompt=txt2img(MODEL, **changes), client_id="c").generation


def test_a_workflow_succeeds_with_its_images_outputs_and_one_unit_captured(runner: GenerationRunner) -> None:
    generation = submitted(**{"5.batch_size": 2})
    mate = submitted(**{"5.batch_size": 2})  # the same shape: still never batched with it
    assert runner.run_one(str(generation.id)) == GenerationStatus.SUCCEEDED
    generation.refresh_from_db()
    mate.refresh_from_db()
    assert mate.status == GenerationStatus.QUEUED
    assert Image.objects.filter(generation=generation).count() == 2
    images = generation.workflow["outputs"]["9"]["images"]
    assert [i["type"] for i in images] == ["output", "output"]
    assert all(f"{i['filename']}" in generation.workflow["files"] for i in images)
    captured = CreditEntry.objects.get(generation_id=generation.id, kind=EntryKind.CAPTURE)
    assert captured.credits == generation.credits_held
    assert generation.step == generation.steps


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (RedisConnectionError("redis went away"), GenerationStatus.PENDING, ""),
        (JobTimeoutException("too long"), GenerationStatus.FAILED, "timeout"),
        (ValueError("a node's bug"), GenerationStatus.FAILED, "generation_failed"),
    ],
)
def test_the_worker_tells_transient_errors_from_the_rest(
    runner: GenerationRunner, monkeypatch: pytest.MonkeyPatch, error: Exception, status: str, code: str
) -> None:
    def failing(prompt: Any, outputs: Any, **_: Any) -> Outcome:
        outcome = Outcome(status="error", node_id="3", node_type="KSampler", code="generation_failed")
        outcome.exception, outcome.exception_message = error, str(error)
        return outcome

    monkeypatch.setattr(sys.modules[__name__], "failing_executor", failing)
    monkeypatch.setattr(settings, "ATELIER_WORKFLOW_EXECUTOR", f"{__name__}.failing_executor")
    generation = submitted()
    runner.run_one(str(generation.id))
    generation.refresh_from_db()
    assert generation.status == status and generation.error_code == code
    assert generation.workflow["error"]["node_id"] == "3"
    if status == GenerationStatus.FAILED:
        assert account_for(generation.user).held == 0


failing_executor: Any = None  # the executor a test registers in ATELIER_WORKFLOW_EXECUTOR

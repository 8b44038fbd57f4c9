"""A final state's webhooks are written in the transaction that makes the state (an outbox), so
they cannot be lost between the commit and the push (issue 17, Medium 7)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from generations import lifecycle, lifecycle_batch
from generations.models import Generation
from tests.factories import queued_generation
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db


def running_job(name: str) -> Generation:
    user = User.objects.create_user(name)
    user.webhooks.create(url="https://hooks.example.com/atelier", secret="whsec_" + "A" * 44)
    return queued_generation(user, status="running", worker_name="w1", started_at=timezone.now())


def event_types() -> list[str]:
    return list(WebhookDelivery.objects.values_list("event_type", flat=True))


def test_the_final_events_delivery_commits_with_the_state_not_after_it(
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = running_job("outbox")
    with django_capture_on_commit_callbacks(execute=False):  # as if the process died at commit
        assert lifecycle.fail(job, "generation_failed", "It broke.", worker_name="w1")
    assert Generation.objects.get(pk=job.pk).status == "failed"
    assert event_types() == ["generation.failed"]


def test_a_rolled_back_transition_leaves_no_delivery() -> None:
    job = running_job("rollback")
    with pytest.raises(RuntimeError), transaction.atomic():
        assert lifecycle.fail(job, "generation_failed", "It broke.", worker_name="w1")
        raise RuntimeError("the surrounding work failed")
    assert Generation.objects.get(pk=job.pk).status == "running"
    assert event_types() == []


def test_a_storage_error_after_success_does_not_lose_the_succeeded_event(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    def s3_is_down(images: Any) -> None:
        raise OSError("S3 did not answer")

    monkeypatch.setattr(lifecycle_batch, "sync_visibility", s3_is_down)  # the storage seam
    job = running_job("s3down")
    with django_capture_on_commit_callbacks(execute=True):
        done = lifecycle_batch.succeed_many(
            [lifecycle_batch.Finished(job, [], {}, units=0)], worker_name="w1", batch_size=1, memory_mode=""
        )
    assert done == [job] and Generation.objects.get(pk=job.pk).status == "succeeded"
    assert event_types() == ["generation.succeeded"]

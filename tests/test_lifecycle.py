"""The transitions of generations/lifecycle.py on their own: each changes a row once, from the
status it names, and settles and tells only when it did."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import User
from billing.credits import account_for, hold_credits
from billing.models import BillingAccount, CreditEntry, EntryKind
from core.errors import ApiError
from generations import lifecycle
from generations.models import Generation, GenerationStatus
from tests.factories import queued_generation

pytestmark = pytest.mark.django_db


def held_job(username: str, **fields: Any) -> Generation:
    """A queued job with 100 hundredths of credits held for it."""
    user = User.objects.create(username=username)
    account = account_for(user)
    BillingAccount.objects.filter(pk=account.pk).update(balance=1000)
    generation = queued_generation(user, credits_held=100, credits_per_image=100, n=1, **fields)
    account.refresh_from_db()
    hold_credits(account=account, credits=100, generation_id=generation.id)
    return generation


def recorder() -> tuple[list[str], lifecycle.Publish]:
    sent: list[str] = []

    def publish(user_id: int, event: dict[str, Any]) -> None:
        sent.append(event["type"])

    return sent, publish


def test_only_one_worker_claims_a_job(django_capture_on_commit_callbacks: Any) -> None:
    job = held_job("claimed")
    sent, publish = recorder()
    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.claim(job, worker_name="w1", publish=publish)
        assert not lifecycle.claim(Generation.objects.get(pk=job.pk), worker_name="w2", publish=publish)
    job.refresh_from_db()
    assert (job.status, job.worker_name) == (GenerationStatus.RUNNING, "w1")
    assert sent == ["generation.started"]


def test_a_worker_claims_by_id_and_gets_the_row_as_the_claim_left_it(
    django_capture_on_commit_callbacks: Any,
) -> None:
    job, canceled = held_job("by-id"), held_job("by-id-canceled")
    Generation.objects.filter(pk=canceled.pk).update(status=GenerationStatus.CANCELED)
    sent, publish = recorder()
    with django_capture_on_commit_callbacks(execute=True):
        claimed = lifecycle.claim_id(str(job.id), worker_name="w1", publish=publish)
        assert lifecycle.claim_id(str(job.id), worker_name="w2", publish=publish) is None  # taken
        assert lifecycle.claim_id(str(canceled.id), worker_name="w1", publish=publish) is None
        assert lifecycle.claim_id("6d9bbd8c-2c1e-4b8e-9a41-4b0a6e4f0c11", worker_name="w1") is None  # gone
    assert claimed is not None and claimed.pk == job.pk
    stored = Generation.objects.get(pk=job.pk)
    assert (claimed.status, claimed.worker_name, claimed.step) == (GenerationStatus.RUNNING, "w1", 0)
    assert claimed.started_at == stored.started_at and claimed.prompt == stored.prompt
    assert (claimed.credits_held, claimed.created_at) == (100, stored.created_at)
    assert sent == ["generation.started"]


def test_a_worker_that_lost_the_job_cannot_finish_it(django_capture_on_commit_callbacks: Any) -> None:
    job = held_job("lost")
    lifecycle.claim(job, worker_name="w1")
    sent, publish = recorder()
    with django_capture_on_commit_callbacks(execute=True):
        assert not lifecycle.fail(job, "generation_failed", "late", worker_name="w2", publish=publish)
    job.refresh_from_db()
    assert job.status == GenerationStatus.RUNNING and sent == []
    assert not CreditEntry.objects.filter(generation=job, kind=EntryKind.RELEASE).exists()


def test_failing_releases_the_credits_once(django_capture_on_commit_callbacks: Any) -> None:
    job = held_job("failing")
    lifecycle.claim(job, worker_name="w1")
    sent, publish = recorder()
    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.fail(job, "generation_failed", "broken", worker_name="w1", publish=publish)
        assert not lifecycle.fail(job, "generation_failed", "again", worker_name="w1", publish=publish)
    job.refresh_from_db()
    assert (job.status, job.error_code) == (GenerationStatus.FAILED, "generation_failed")
    assert [e.credits for e in CreditEntry.objects.filter(generation=job, kind=EntryKind.RELEASE)] == [100]
    assert BillingAccount.objects.get(user=job.user).held == 0
    assert sent == ["generation.failed"]


def test_a_transient_error_puts_the_job_back_until_it_has_had_its_tries(settings: Any) -> None:
    settings.ATELIER_MAX_ATTEMPTS = 2
    job = held_job("unlucky")
    lifecycle.claim(job, worker_name="w1")
    assert lifecycle.retry_later(job, ConnectionError("dropped"), worker_name="w1") == "pending"
    job.refresh_from_db()
    assert (job.status, job.attempts, job.worker_name) == (GenerationStatus.PENDING, 1, "")
    Generation.objects.filter(pk=job.pk).update(status=GenerationStatus.QUEUED)
    lifecycle.claim(job, worker_name="w1")
    assert lifecycle.retry_later(job, ConnectionError("dropped"), worker_name="w1") == "failed"
    job.refresh_from_db()
    assert (job.status, job.error_code) == (GenerationStatus.FAILED, "retries_exhausted")


def test_a_finished_job_cannot_be_canceled() -> None:
    job = held_job("finished")
    lifecycle.claim(job, worker_name="w1")
    lifecycle.cancel_running(job, worker_name="w1")
    with pytest.raises(ApiError) as raised:
        lifecycle.cancel(Generation.objects.get(pk=job.pk))
    assert raised.value.code == "generation_finished"

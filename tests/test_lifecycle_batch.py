"""A batch's jobs succeed together (generations/lifecycle_batch.py): each still exactly once, only
for the worker that holds it, its own timings, its credits captured once, its event sent."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from billing.models import BillingAccount, CreditEntry, EntryKind
from generations import lifecycle
from generations.lifecycle_batch import Finished, succeed_many
from generations.models import Generation, GenerationStatus, Image
from gpu_worker.progress import step_callback
from tests.test_lifecycle import held_job, recorder

pytestmark = pytest.mark.django_db


def image_of(job: Generation) -> Image:
    digest = f"{job.pk.hex:0<64}"[:64]
    return Image(
        generation=job,
        index=0,
        seed=job.seed,
        width=8,
        height=8,
        original=f"images/{digest}.png",
        sha256=digest,
    )


def claimed(username: str, worker: str = "w1") -> Generation:
    job = held_job(username)
    assert lifecycle.claim(job, worker_name=worker)
    return job


def test_a_batch_succeeds_in_one_go_each_job_with_its_own_timings(
    django_capture_on_commit_callbacks: Any,
) -> None:
    jobs = [claimed(f"batch{i}") for i in range(3)]
    sent, publish = recorder()
    finished = [Finished(job, [image_of(job)], {"queue_wait": i / 10}) for i, job in enumerate(jobs)]
    with django_capture_on_commit_callbacks(execute=True):
        done = succeed_many(finished, worker_name="w1", batch_size=3, memory_mode="normal", publish=publish)
    assert done == jobs
    assert sent == ["generation.succeeded"] * 3
    for i, job in enumerate(jobs):
        row = Generation.objects.get(pk=job.pk)
        assert (row.status, row.batch_size, row.timings) == (
            GenerationStatus.SUCCEEDED,
            3,
            {"queue_wait": i / 10},
        )
        assert row.run_seconds is not None and row.finished_at is not None
        assert Image.objects.filter(generation=row).count() == 1
        captures = CreditEntry.objects.filter(generation=row, kind=EntryKind.CAPTURE)
        assert [c.credits for c in captures] == [100]
        account = BillingAccount.objects.get(user_id=row.user_id)
        assert (account.balance, account.held) == (900, 0)


def test_jobs_the_worker_no_longer_holds_are_left_alone(django_capture_on_commit_callbacks: Any) -> None:
    mine, taken, canceled = claimed("mine"), claimed("taken", worker="w2"), claimed("canceled")
    assert lifecycle.cancel_running(canceled, worker_name="w1")
    sent, publish = recorder()
    finished = [Finished(job, [image_of(job)], {}) for job in (mine, taken, canceled)]
    with django_capture_on_commit_callbacks(execute=True):
        done = succeed_many(finished, worker_name="w1", batch_size=3, memory_mode="normal", publish=publish)
    assert done == [mine] and sent == ["generation.succeeded"]
    assert Generation.objects.get(pk=taken.pk).status == GenerationStatus.RUNNING
    assert Generation.objects.get(pk=canceled.pk).status == GenerationStatus.CANCELED
    assert not Image.objects.filter(generation__in=[taken, canceled]).exists()
    assert not CreditEntry.objects.filter(generation__in=[taken, canceled], kind=EntryKind.CAPTURE).exists()
    # A second finish of the same batch (a re-delivered job) changes nothing.
    assert succeed_many(finished, worker_name="w1", batch_size=3, memory_mode="normal") == []
    assert CreditEntry.objects.filter(generation=mine, kind=EntryKind.CAPTURE).count() == 1


def test_the_row_hears_each_step_but_the_last_which_the_finish_writes() -> None:
    """Progress reaches the row at each reported step; the last step's UPDATE is left to the
    finish (one write less on a job's path), which writes it with the status: the event still
    tells of the last step at once."""
    job = claimed("stepper")
    reported: list[int] = []

    def report(generation: Generation, latents: torch.Tensor) -> None:
        reported.append(generation.step)

    on_step = step_callback([job], worker_name="w1", interval=0.0, cancel=print, report=report)
    latents = {0: torch.zeros(1, 4, 1, 1)}
    on_step(1, 3, latents)
    on_step(2, 3, latents)
    assert Generation.objects.values_list("step", "total_steps").get(pk=job.pk) == (2, 3)
    on_step(3, 3, latents)
    assert reported == [1, 2, 3]
    assert Generation.objects.values_list("step", "total_steps").get(pk=job.pk) == (2, 3)
    succeed_many([Finished(job, [image_of(job)], {})], worker_name="w1", batch_size=1, memory_mode="normal")
    assert Generation.objects.values_list("step", "total_steps", "status").get(pk=job.pk) == (
        3,
        3,
        "succeeded",
    )


def test_a_one_step_job_gets_its_total_from_the_finish() -> None:
    job = claimed("one-step")
    on_step = step_callback([job], worker_name="w1", interval=0.0, cancel=print, report=lambda g, t: None)
    on_step(1, 1, {0: torch.zeros(1, 4, 1, 1)})
    succeed_many([Finished(job, [image_of(job)], {})], worker_name="w1", batch_size=1, memory_mode="normal")
    assert Generation.objects.values_list("step", "total_steps").get(pk=job.pk) == (1, 1)

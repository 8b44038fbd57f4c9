"""The dispatcher's preemption rule (generations/preemption.py) on rows and heartbeats: who is
chosen, never twice, nothing while a worker is idle or on paid work; and the transition."""

from __future__ import annotations

import io
import time
from collections.abc import Collection, Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import torch
from django.utils import timezone
from PIL import Image as PILImage

from accounts.models import User
from billing.models import CreditEntry
from generations import queues
from generations.lifecycle_preemption import preempt
from generations.models import Generation, GenerationStatus, Image
from generations.preemption import preempt_for_waiting_priority
from generations.storage import open_content
from generations.workers import erase_heartbeat, write_heartbeat
from gpu_worker.model import BatchStepCallback
from gpu_worker.resume import point_key
from gpu_worker.runner import GenerationRunner
from tests.factories import private_pool_model, queued_generation
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def rule(settings: Any, no_session_workers: None) -> Any:
    """A short limit; no other worker's heartbeat (the shared stack's are paused and expire)."""
    settings.ATELIER_PREEMPT_AFTER = 5
    client = queues.redis_client()
    for key in [*client.scan_iter("atelier:worker:*"), *client.scan_iter("atelier:pool-workers:*")]:
        client.delete(key)
    yield settings
    for key in client.scan_iter("atelier:preempt:*"):
        client.delete(key)


@pytest.fixture
def user() -> User:
    return User.objects.create_user("rule", password="x")


def running(user: User, worker: str, lane: str, started_seconds_ago: float, **fields: Any) -> Generation:
    started = timezone.now() - timedelta(seconds=started_seconds_ago)
    return queued_generation(
        user, lane=lane, status=GenerationStatus.RUNNING, worker_name=worker, started_at=started, **fields
    )


def beat(name: str, pool: str, jobs: list[Generation]) -> None:
    state = {"serving": True, "pools": [pool], "current_jobs": [str(job.id) for job in jobs]}
    write_heartbeat(name, state, [pool], at=time.time())


def waiting_priority(user: User, waited: float = 10) -> Generation:
    entered = timezone.now() - timedelta(seconds=waited)
    return queued_generation(user, lane="priority", lane_entered_at=entered)


def flagged() -> set[str]:
    client = queues.redis_client()
    return {key.decode().rpartition(":")[2] for key in client.scan_iter("atelier:preempt:*")}


def test_it_stops_the_lowest_lane_latest_started_job_once(user: User) -> None:
    pool = waiting_priority(user).pool
    free_old = running(user, "w1", "free", 30)
    relax_old = running(user, "w2", "relax", 40)
    relax_new = running(user, "w3", "relax", 5)
    for name, job in (("w1", free_old), ("w2", relax_old), ("w3", relax_new)):
        beat(name, pool, [job])

    assert preempt_for_waiting_priority() == 1
    assert flagged() == {str(relax_new.id)}
    # While that job has not stopped yet, nothing more is flagged, and it is not flagged again.
    assert preempt_for_waiting_priority() == 0
    assert flagged() == {str(relax_new.id)}


def test_a_flag_left_from_an_earlier_run_neither_counts_nor_stops_the_next(user: User) -> None:
    pool = waiting_priority(user).pool
    job = running(user, "w1", "free", 3)
    beat("w1", pool, [job])
    queues.redis_client().set(queues.preempt_flag_key(str(job.id)), "an earlier run")
    assert preempt_for_waiting_priority() == 1
    assert queues.redis_client().get(queues.preempt_flag_key(str(job.id))) == queues.run_token(job).encode()


def test_it_stops_every_job_of_the_chosen_workers_batch(user: User) -> None:
    pool = waiting_priority(user).pool
    batch = [running(user, "w1", "free", 3), running(user, "w1", "free", 3)]
    beat("w1", pool, batch)
    assert preempt_for_waiting_priority() == 2
    assert flagged() == {str(job.id) for job in batch}


@pytest.mark.parametrize(
    "situation",
    ["a worker is idle", "a worker runs a standard job", "a worker runs a priority job", "not waited long"],
)
def test_it_flags_nothing_when(user: User, situation: str) -> None:
    waiting = waiting_priority(user, waited=2 if situation == "not waited long" else 10)
    beat("w1", waiting.pool, [running(user, "w1", "free", 20)])
    if situation == "a worker is idle":
        beat("w2", waiting.pool, [])
    elif situation.startswith("a worker runs"):
        lane = situation.split()[-2]
        beat("w2", waiting.pool, [running(user, "w2", lane, 20)])
    assert preempt_for_waiting_priority() == 0
    assert flagged() == set()


def test_it_never_stops_a_workflow(user: User) -> None:
    pool = waiting_priority(user).pool
    beat("w1", pool, [running(user, "w1", "free", 5, kind="workflow")])
    assert preempt_for_waiting_priority() == 0


def test_it_is_off_at_zero(user: User, rule: Any) -> None:
    rule.ATELIER_PREEMPT_AFTER = 0
    pool = waiting_priority(user).pool
    beat("w1", pool, [running(user, "w1", "free", 5)])
    assert preempt_for_waiting_priority() == 0


def test_the_transition_requeues_at_the_front_keeping_the_hold(user: User) -> None:
    endpoint = WebhookEndpoint.objects.create(
        user=user, url="https://example.com/hook", secret="s", events=["generation.preempted"]
    )
    job = running(user, "w1", "free", 5, credits_held=100)
    other = queued_generation(user, lane="free")
    queues.enqueue(other)
    assert preempt(job, worker_name="w1", step=7, resumable=True)
    job.refresh_from_db()
    assert (job.status, job.step, job.preemptions, job.worker_name) == ("queued", 7, 1, "")
    waiting = queues.redis_client().lrange(queues.queue_key(job.queue_name), 0, -1)
    assert waiting[0].decode() == queues.job_id_for(job) == f"gen-{job.id}-0p1"
    assert not CreditEntry.objects.filter(generation=job).exists()  # no second hold, nothing settled
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.event_type == "generation.preempted"
    assert delivery.payload["stopped_at_step"] == 7 and delivery.payload["resumes_at_step"] == 8
    # Only the worker that ran it moves it, once.
    assert not preempt(job, worker_name="w1", step=7, resumable=True)
    erase_heartbeat("w1", [job.pool])


# The worker's side, in-process: the flag, the saved point, the second run.


class FlaggingRunner(GenerationRunner):
    """Flags its job's run after ``flag_at`` steps, as the dispatcher would (once)."""

    flag_at: int | None = 2

    def progress_callback(self, jobs: list[Generation]) -> BatchStepCallback:
        inner = super().progress_callback(jobs)

        def on_step(step: int, total: int, latents: dict[int, torch.Tensor]) -> Collection[int]:
            if step == self.flag_at:
                self.flag_at = None
                queues.redis_client().set(queues.preempt_flag_key(str(jobs[0].id)), queues.run_token(jobs[0]))
            return inner(step, total, latents)

        return on_step


@pytest.fixture
def runner(settings: Any) -> Iterator[FlaggingRunner]:
    private_pool_model(settings)  # a pool the shared stack's worker does not serve
    instance = FlaggingRunner(name="preempt-runner")
    yield instance
    instance.publisher.close()


def image_pixels(generation: Generation) -> np.ndarray:
    image = Image.objects.get(generation=generation)
    return np.asarray(PILImage.open(io.BytesIO(open_content(image.original))).convert("RGB"))


def test_a_flagged_job_is_given_back_and_its_next_run_resumes_to_the_same_image(
    user: User, runner: FlaggingRunner
) -> None:
    fields = {"model_name": "tiny-private", "pool": "tiny-private-pool", "lane": "free", "steps": 6}
    job = queued_generation(user, sampler="euler", **fields)

    runner.run_one(str(job.id))  # flagged during its second step: it stops after it

    job.refresh_from_db()
    assert (job.status, job.step, job.preemptions) == ("queued", 2, 1)
    assert not queues.redis_client().exists(queues.preempt_flag_key(str(job.id)))
    assert queues.redis_client().exists(point_key(str(job.id)))
    waiting = queues.redis_client().lrange(queues.queue_key(job.queue_name), 0, -1)
    assert [j.decode() for j in waiting] == [queues.job_id_for(job)]

    assert runner.run_one(str(job.id)) == GenerationStatus.SUCCEEDED
    assert not queues.redis_client().exists(point_key(str(job.id)))  # taken by the second run
    reference = queued_generation(user, sampler="euler", **fields)
    assert runner.run_one(str(reference.id)) == GenerationStatus.SUCCEEDED
    assert np.array_equal(image_pixels(job), image_pixels(reference))

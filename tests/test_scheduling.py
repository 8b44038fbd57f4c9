"""Caps, pending jobs, relax ordering, aging, retries and timeouts, in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from rq import Queue, SimpleWorker

from accounts.models import User
from accounts.services import api_key_create
from billing.credits import account_for
from billing.models import BillingAccount, CreditEntry, EntryKind, Plan
from generations import queues
from generations.dispatcher import tick
from generations.models import Generation
from generations.positions import queue_position
from generations.registry import default_model
from generations.scheduling import age_queued, release_relax
from gpu_worker import jobs
from gpu_worker.heartbeat import Heartbeat
from gpu_worker.runner import GenerationRunner

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_queues() -> None:
    connection = queues.redis_client()
    for name in settings.RQ_QUEUES:
        connection.delete(f"rq:queue:{name}")


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks: Any) -> Callable[[], Any]:
    return lambda: django_capture_on_commit_callbacks(execute=True)


def user_on(plan: str, name: str, **limits: int) -> tuple[User, Client]:
    user = User.objects.create_user(name)
    account = account_for(user)
    Plan.objects.filter(slug=plan).update(**limits) if limits else None
    BillingAccount.objects.filter(pk=account.pk).update(plan=Plan.objects.get(slug=plan), balance=100_00)
    _, key = api_key_create(user=user)
    return user, Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def submit(api: Client, **fields: Any) -> Any:
    body = {"prompt": "a bridge", "width": 64, "height": 64, "steps": 2, **fields}
    return api.post("/api/v1/generations", body, content_type="application/json")


def rq_ids(name: str) -> list[str]:
    return [v.decode() for v in queues.redis_client().lrange(f"rq:queue:{name}", 0, -1)]


def test_jobs_over_the_cap_wait_as_pending_and_past_that_get_queue_full(on_commit: Any) -> None:
    user, api = user_on("basic", "capped", max_concurrent=1, max_pending=2)
    with on_commit():
        statuses = [submit(api) for _ in range(4)]
    assert [r.status_code for r in statuses[:3]] == [202, 202, 202]
    assert [r.json()["status"] for r in statuses[:3]] == ["queued", "pending", "pending"]
    full = statuses[3]
    assert full.status_code == 429 and full.json()["error"]["code"] == "queue_full"
    assert int(full["Retry-After"]) >= 1
    assert Generation.objects.filter(user=user).count() == 3
    assert CreditEntry.objects.filter(account__user=user, kind=EntryKind.HOLD).count() == 3
    assert len(rq_ids("gen.tiny.standard")) == 1


def test_when_a_job_ends_the_users_oldest_pending_job_enters_the_queue(on_commit: Any) -> None:
    user, api = user_on("basic", "waiter", max_concurrent=1, max_pending=5)
    with on_commit():
        ids = [submit(api).json()["id"] for _ in range(3)]
    with on_commit():
        assert api.post(f"/api/v1/generations/{ids[0]}/cancel").status_code == 202
    statuses = dict(Generation.objects.filter(user=user).values_list("id", "status"))
    assert [statuses[Generation.objects.get(pk=i).pk] for i in ids] == ["canceled", "queued", "pending"]
    assert rq_ids("gen.tiny.standard") == [queues.job_id_for(Generation.objects.get(pk=ids[1]))]


def test_relax_jobs_are_released_fewest_relax_seconds_first(on_commit: Any) -> None:
    heavy, heavy_api = user_on("standard", "heavy")
    _, light_api = user_on("standard", "light")
    Generation.objects.create(
        user=heavy,
        status="succeeded",
        model_name="x",
        pool="tiny",
        lane="relax",
        relax=True,
        prompt="p",
        width=64,
        height=64,
        steps=1,
        guidance=1,
        seed=1,
        run_seconds=900,
        finished_at=timezone.now(),
    )
    with on_commit():
        heavy_job = submit(heavy_api, mode="relax").json()
        light_job = submit(light_api, mode="relax").json()
    assert heavy_job["status"] == light_job["status"] == "pending"
    assert heavy_job["credits"] == "0.00"
    with on_commit():
        assert release_relax() == 2
    released = rq_ids("gen.tiny.relax")
    assert released == [f"gen-{light_job['id']}-0", f"gen-{heavy_job['id']}-0"]


def test_a_job_that_waited_past_its_lanes_limit_moves_up_a_lane(on_commit: Any, settings: Any) -> None:
    settings.ATELIER_LANE_AGE_LIMITS = {"free": 60, "standard": 60}
    _, api = user_on("free", "patient")
    with on_commit():
        job = submit(api).json()
    Generation.objects.filter(pk=job["id"]).update(lane_entered_at=timezone.now() - timedelta(seconds=61))
    assert age_queued() == 1
    generation = Generation.objects.get(pk=job["id"])
    assert generation.lane == "standard"
    assert rq_ids("gen.tiny.free") == [] and rq_ids("gen.tiny.standard") == [queues.job_id_for(generation)]
    assert age_queued() == 0


def test_jobs_in_higher_lanes_are_ahead_in_the_queue_position(on_commit: Any) -> None:
    _, free_api = user_on("free", "f")
    _, pro_api = user_on("pro", "p")
    beat = Heartbeat("scheduling-test-worker", {"pools": [default_model().pool], "device": "cpu"})
    beat.start()  # a pool with a worker has a pace, and so an ETA
    with on_commit():
        free_job = submit(free_api).json()
        pro_job = submit(pro_api).json()
    beat.stop()
    assert pro_job["queue_position"] == 1
    assert queue_position(Generation.objects.get(pk=free_job["id"])) == 2
    assert pro_job["eta_seconds"] is not None


@pytest.fixture(scope="module")
def runner() -> Iterator[GenerationRunner]:
    instance = GenerationRunner(name="scheduling-runner")
    yield instance
    instance.publisher.close()


def test_a_transient_error_is_retried_with_backoff_then_gives_up(
    runner: GenerationRunner, monkeypatch: pytest.MonkeyPatch, on_commit: Any, settings: Any
) -> None:
    settings.ATELIER_MAX_ATTEMPTS = 2
    user, api = user_on("basic", "unlucky")
    with on_commit():
        job = submit(api).json()

    def connection_lost(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("the connection to the model store dropped (injected)")

    monkeypatch.setattr("gpu_worker.rendering.render_batch", connection_lost)
    with on_commit():
        runner.run_one(job["id"])
    generation = Generation.objects.get(pk=job["id"])
    assert (generation.status, generation.attempts) == ("pending", 1)
    assert generation.retry_at is not None and generation.retry_at > timezone.now()
    assert tick().released == 0  # not due yet
    Generation.objects.filter(pk=generation.pk).update(retry_at=timezone.now() - timedelta(seconds=1))
    with on_commit():
        assert tick().released == 1
    assert Generation.objects.get(pk=job["id"]).status == "queued"
    with on_commit():
        runner.run_one(job["id"])
    generation = Generation.objects.get(pk=job["id"])
    assert (generation.status, generation.error_code) == ("failed", "retries_exhausted")
    assert BillingAccount.objects.get(user=user).held == 0


@pytest.mark.django_db(transaction=True)
def test_a_job_over_its_pools_time_limit_fails_with_timeout() -> None:
    user, _ = user_on("basic", "slow")
    model = default_model()
    generation = Generation.objects.create(
        user=user,
        model_name=model.name,
        pool=model.pool,
        lane="standard",
        prompt="slow",
        width=512,
        height=512,
        steps=150,
        guidance=7,
        seed=1,
    )
    runner = GenerationRunner(name="timeout-runner")
    runner.preload([model.pool])  # loading, slow on a busy machine, is not what the limit is about
    jobs.install_runner(runner)
    # A queue of its own, so that no live worker of the session takes the job; one second allowed.
    queue = Queue("timeout-test", connection=queues.redis_client(), default_timeout=1)
    queue.enqueue(queues.JOB_FUNCTION, str(generation.id))
    SimpleWorker([queue], connection=queues.redis_client()).work(burst=True)
    generation.refresh_from_db()
    assert (generation.status, generation.error_code) == ("failed", "timeout")


def test_a_job_lost_too_many_times_fails_and_releases_its_credits(on_commit: Any, settings: Any) -> None:
    settings.ATELIER_MAX_ATTEMPTS = 3
    user, api = user_on("basic", "unlucky_worker")
    with on_commit():
        job = submit(api).json()
    long_ago = timezone.now() - timedelta(minutes=5)
    Generation.objects.filter(pk=job["id"]).update(
        status="running", worker_name="ghost-worker", started_at=long_ago, attempts=2
    )
    with on_commit():
        assert tick().failed == 1
    generation = Generation.objects.get(pk=job["id"])
    assert (generation.status, generation.error_code) == ("failed", "worker_lost")
    account = BillingAccount.objects.get(user=user)
    assert (account.balance, account.held) == (100_00, 0)

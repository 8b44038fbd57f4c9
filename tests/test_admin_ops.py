"""Staff operations in the admin: the workers page, retrying dead letters, moving a job to the front."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import django_rq.settings
import pytest
import redis
from django.db import transaction
from django.test import Client
from django.utils import timezone

from accounts.models import User
from billing.credits import account_for, hold_credits, settle_credits
from billing.models import BillingAccount, CreditEntry, EntryKind, Plan
from generations import queues
from generations.models import Generation, GenerationStatus
from generations.operations import retry_failed_generation
from generations.workers import heartbeat_key

pytestmark = pytest.mark.django_db

# A pool of its own: a live gpu_worker started by another test in this session never takes its jobs.
POOL = "opstest"
LANE = "standard"
QUEUE_KEY = f"rq:queue:gen.{POOL}.{LANE}"
CHANGELIST = "/admin/generations/generation/"
Callbacks = Callable[..., AbstractContextManager[list[Callable[[], Any]]]]


def wipe(client: redis.Redis, lanes: tuple[str, ...]) -> None:
    for lane in lanes:
        key = f"rq:queue:gen.{POOL}.{lane}"
        for job_id in client.lrange(key, 0, -1):
            client.delete(b"rq:job:" + job_id)
        client.delete(key)
        client.srem("rq:queues", key)
    for key in client.scan_iter(match=heartbeat_key(f"{POOL}-*")):
        client.delete(key)


@pytest.fixture(autouse=True)
def own_queues(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    settings.ATELIER_DEFAULT_PLAN = "pro"
    for lane in settings.LANES:
        monkeypatch.setitem(django_rq.settings.QUEUES, f"gen.{POOL}.{lane}", {"URL": settings.REDIS_URL})
    client = queues.redis_client()
    wipe(client, settings.LANES)
    yield client
    wipe(client, settings.LANES)


@pytest.fixture
def owner() -> User:
    user = User.objects.create_user("owner", password="correct horse battery staple")
    account_for(user)
    return user


def make_generation(user: User, status: str, **fields: Any) -> Generation:
    values: dict[str, Any] = {
        "model_name": "atelier-demo",
        "pool": POOL,
        "lane": LANE,
        "prompt": "a lighthouse at dusk",
        "width": 512,
        "height": 512,
        "steps": 20,
        "guidance": 7.5,
        "seed": 1,
        "credits_held": 100,
        "credits_per_image": 100,
        **fields,
    }
    return Generation.objects.create(user=user, status=status, **values)


def fail(generation: Generation) -> None:
    """What a worker does when a job fails for good: failed, and its held credits released."""
    with transaction.atomic():
        Generation.objects.filter(pk=generation.pk).update(
            status=GenerationStatus.FAILED,
            error_code="retries_exhausted",
            error_message="Failed 3 times: CUDA error",
            finished_at=timezone.now(),
        )
        settle_credits(
            user_id=generation.user_id, generation_id=generation.id, held=generation.credits_held, captured=0
        )


def failed_generation(user: User) -> Generation:
    account = account_for(user)
    with transaction.atomic():
        generation = make_generation(
            user, GenerationStatus.RUNNING, worker_name=f"{POOL}-gpu-9", attempts=2, step=7
        )
        hold_credits(account=account, credits=generation.credits_held, generation_id=generation.id)
    fail(generation)
    generation.refresh_from_db()
    return generation


def run_action(client: Client, action: str, *generations: Generation) -> list[str]:
    response = client.post(
        CHANGELIST, {"action": action, "_selected_action": [str(g.pk) for g in generations]}, follow=True
    )
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def account_of(user: User) -> BillingAccount:
    return BillingAccount.objects.get(user=user)


# The workers page


def test_it_lists_live_workers_with_their_pools_and_current_job(admin_client: Client, owner: User) -> None:
    running = make_generation(owner, GenerationStatus.RUNNING, worker_name=f"{POOL}-gpu-1")
    state = {
        "pools": [POOL],
        "device": "cuda:3",
        "models": ["/models/atelier-demo"],
        "current_jobs": [str(running.id)],
        "at": time.time() - 4,
    }
    queues.redis_client().set(heartbeat_key(f"{POOL}-gpu-1"), json.dumps(state), ex=60)

    response = admin_client.get("/admin/workers/")

    assert response.status_code == 200
    page = response.content.decode()
    assert f"{POOL}-gpu-1" in page and "cuda:3" in page and "/models/atelier-demo" in page
    assert f'href="/admin/generations/generation/{running.id}/change/"' in page
    (worker,) = [w for w in response.context["workers"] if w.name == f"{POOL}-gpu-1"]
    assert worker.pools == [POOL]
    assert worker.seconds_since_beat is not None and 3 <= worker.seconds_since_beat < 30


def test_it_leaves_out_workers_whose_heartbeat_expired(admin_client: Client) -> None:
    client = queues.redis_client()
    client.set(heartbeat_key(f"{POOL}-gone"), json.dumps({"pools": [POOL], "at": time.time()}), px=1)
    time.sleep(0.05)

    response = admin_client.get("/admin/workers/")

    assert f"{POOL}-gone" not in response.content.decode()


def test_it_shows_each_lanes_queue_length_and_oldest_wait(admin_client: Client, owner: User) -> None:
    queues.redis_client().set(
        heartbeat_key(f"{POOL}-gpu-1"), json.dumps({"pools": [POOL], "at": time.time()}), ex=60
    )
    waited = timezone.now() - timedelta(seconds=90)
    for _ in range(3):
        queues.enqueue(make_generation(owner, GenerationStatus.QUEUED, lane_entered_at=waited))

    response = admin_client.get("/admin/workers/")

    (pool,) = [p for p in response.context["pools"] if p.pool == POOL]
    lanes = {lane.lane: lane for lane in pool.lanes}
    assert set(lanes) == {"priority", "standard", "free", "relax"}
    assert lanes[LANE].length == 3
    assert lanes[LANE].oldest_seconds is not None and 90 <= lanes[LANE].oldest_seconds < 120
    assert lanes["priority"].length == 0 and lanes["priority"].oldest_seconds is None
    assert f'data-queue="gen.{POOL}.{LANE}"' in response.content.decode()


def test_it_links_to_the_dead_letters(admin_client: Client) -> None:
    page = admin_client.get("/admin/workers/").content.decode()

    assert 'href="/admin/generations/generation/?status__exact=failed"' in page


def test_the_admin_index_links_to_the_workers_page_and_dead_letters(admin_client: Client) -> None:
    page = admin_client.get("/admin/").content.decode()

    assert 'href="/admin/workers/"' in page
    assert 'href="/admin/generations/generation/?status__exact=failed"' in page
    assert "Generations" in page  # the app list is still there


def test_it_sends_non_staff_to_the_admin_login(client: Client, owner: User) -> None:
    anonymous = client.get("/admin/workers/")
    client.force_login(owner)
    signed_in = client.get("/admin/workers/")

    for response in (anonymous, signed_in):
        assert response.status_code == 302
        assert response["Location"] == "/admin/login/?next=/admin/workers/"


# Retrying dead letters


def test_it_retries_a_failed_generation_with_its_credits_held_again(
    admin_client: Client, owner: User, django_capture_on_commit_callbacks: Callbacks
) -> None:
    generation = failed_generation(owner)
    balance_before = account_of(owner).balance

    with django_capture_on_commit_callbacks(execute=True):
        messages = run_action(admin_client, "retry_failed", generation)

    assert "Retried 1 failed generation(s)." in messages
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.QUEUED
    assert generation.attempts == 0 and generation.retry_at is None and generation.step == 0
    assert generation.error_code == "" and generation.error_message == ""
    assert generation.finished_at is None and generation.worker_name == ""
    account = account_of(owner)
    assert (account.balance, account.held) == (balance_before - 100, 100)
    hold = CreditEntry.objects.get(generation=generation, kind=EntryKind.HOLD)
    assert (hold.amount, hold.credits) == (-100, 100)
    assert queues.redis_client().lrange(QUEUE_KEY, 0, -1) == [queues.job_id_for(generation).encode()]


def test_it_keeps_the_earlier_attempts_ledger_entries_under_a_round_reference(owner: User) -> None:
    generation = failed_generation(owner)

    assert retry_failed_generation(generation=generation)

    earlier = CreditEntry.objects.filter(reference=f"generation:{generation.id}:round:1")
    assert sorted(earlier.values_list("kind", "amount")) == [(EntryKind.HOLD, -100), (EntryKind.RELEASE, 100)]
    assert list(CreditEntry.objects.filter(generation=generation).values_list("kind", flat=True)) == [
        EntryKind.HOLD
    ]


def test_a_retried_generation_can_fail_and_be_retried_again(owner: User) -> None:
    generation = failed_generation(owner)
    balance_before = account_of(owner).balance

    assert retry_failed_generation(generation=generation)
    Generation.objects.filter(pk=generation.pk).update(status=GenerationStatus.RUNNING)
    fail(generation)
    assert (account_of(owner).balance, account_of(owner).held) == (balance_before, 0)
    assert retry_failed_generation(generation=generation)

    assert CreditEntry.objects.filter(reference=f"generation:{generation.id}:round:2").count() == 2
    assert (account_of(owner).balance, account_of(owner).held) == (balance_before - 100, 100)


def test_a_retry_waits_as_pending_while_the_owner_is_at_their_cap(
    admin_client: Client, owner: User, django_capture_on_commit_callbacks: Callbacks
) -> None:
    Plan.objects.filter(pk=account_of(owner).plan_id).update(max_concurrent=1)
    queued = make_generation(owner, GenerationStatus.QUEUED)
    generation = failed_generation(owner)

    with django_capture_on_commit_callbacks(execute=True):
        messages = run_action(admin_client, "retry_failed", generation)

    assert "Retried 1 failed generation(s)." in messages
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.PENDING
    assert queues.redis_client().llen(QUEUE_KEY) == 0
    assert CreditEntry.objects.filter(generation=generation, kind=EntryKind.HOLD).exists()
    queued.refresh_from_db()
    assert queued.status == GenerationStatus.QUEUED


def test_it_skips_a_retry_the_owner_cannot_pay_for(admin_client: Client, owner: User) -> None:
    generation = failed_generation(owner)
    BillingAccount.objects.filter(user=owner).update(balance=50)

    messages = run_action(admin_client, "retry_failed", generation)

    assert "Retried 0 failed generation(s)." in messages
    assert any("insufficient credits" in m and str(generation.id) in m for m in messages)
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.FAILED and generation.error_code == "retries_exhausted"
    assert (account_of(owner).balance, account_of(owner).held) == (50, 0)
    ledger = CreditEntry.objects.filter(generation=generation).values_list("kind", flat=True)
    assert sorted(ledger) == [EntryKind.HOLD, EntryKind.RELEASE]  # the failed attempt's, untouched
    assert not CreditEntry.objects.filter(reference__startswith=f"generation:{generation.id}:").exists()


def test_it_retries_only_failed_generations(admin_client: Client, owner: User) -> None:
    done = make_generation(owner, GenerationStatus.SUCCEEDED, finished_at=timezone.now())
    generation = failed_generation(owner)

    messages = run_action(admin_client, "retry_failed", done, generation)

    assert "Retried 1 failed generation(s)." in messages
    assert "Skipped 1 that were not failed." in messages
    done.refresh_from_db()
    assert done.status == GenerationStatus.SUCCEEDED


# Moving a job to the front of its lane


def test_it_moves_a_queued_job_to_the_head_of_its_rq_queue(admin_client: Client, owner: User) -> None:
    first, second, third = (make_generation(owner, GenerationStatus.QUEUED) for _ in range(3))
    for generation in (first, second, third):
        queues.enqueue(generation)
    client = queues.redis_client()
    assert client.lindex(QUEUE_KEY, 0) == queues.job_id_for(first).encode()

    messages = run_action(admin_client, "move_to_front", third)

    assert "Moved 1 queued generation(s) to the front." in messages
    assert client.lindex(QUEUE_KEY, 0) == queues.job_id_for(third).encode()
    assert client.llen(QUEUE_KEY) == 3


def test_it_moves_only_queued_jobs(admin_client: Client, owner: User) -> None:
    queued = make_generation(owner, GenerationStatus.QUEUED)
    queues.enqueue(queued)
    pending = make_generation(owner, GenerationStatus.PENDING)

    messages = run_action(admin_client, "move_to_front", pending)

    assert "Moved 0 queued generation(s) to the front." in messages
    assert any("not queued" in m and str(pending.id) in m for m in messages)
    assert queues.redis_client().lrange(QUEUE_KEY, 0, -1) == [queues.job_id_for(queued).encode()]

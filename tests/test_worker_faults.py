"""Real worker processes killed and stopped mid-job; concurrent spending of one balance."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from django.db import connection

from billing.credits import account_for
from billing.models import BillingAccount, CreditEntry, EntryKind
from generations.dispatcher import TickResult, tick
from generations.models import Generation, Image
from tests.conftest import ApiUser, Servers

pytestmark = pytest.mark.live

LONG = {"prompt": "a long render", "width": 512, "height": 512, "steps": 150}


def reconcile() -> TickResult:
    """The dispatcher's step, in a thread of its own as in the dispatcher process (this thread may
    hold the browser tests' event loop, where synchronous event publishing is not allowed)."""

    def step() -> TickResult:
        try:
            return tick()
        finally:
            connection.close()  # this thread's own connection, or the test DB cannot be dropped

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(step).result()


def submit(user: ApiUser, body: dict[str, Any]) -> dict[str, Any]:
    response = user.post("/api/v1/generations", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


def test_a_worker_killed_mid_job_is_replaced_and_the_job_runs_once(servers: Servers, alice: ApiUser) -> None:
    before = account_for(alice.user).balance
    with alice.events() as events:
        events.next()
        generation = submit(alice, LONG)
        events.until(generation["id"], {"generation.progress"})
        victim = servers.workers[-1]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        servers.start_worker()
        deadline = time.monotonic() + 30
        while reconcile().requeued == 0:
            assert time.monotonic() < deadline, "the reconciler never re-queued the job"
            time.sleep(0.5)
        seen = events.until(generation["id"], {"generation.succeeded", "generation.failed"})
    assert [e["type"] for e in seen][:2] == ["generation.queued", "generation.started"]
    assert seen[-1]["type"] == "generation.succeeded"
    row = Generation.objects.get(pk=generation["id"])
    assert row.attempts == 1
    assert Image.objects.filter(generation=row).count() == 1
    captures = CreditEntry.objects.filter(generation=row, kind=EntryKind.CAPTURE)
    assert [c.credits for c in captures] == [row.credits_held]
    account = BillingAccount.objects.get(user=alice.user)
    assert (account.balance, account.held) == (before - row.credits_held, 0)


def test_sigterm_lets_the_running_job_finish_then_the_worker_exits(servers: Servers, alice: ApiUser) -> None:
    with alice.events() as events:
        events.next()
        generation = submit(alice, {**LONG, "steps": 60})
        events.until(generation["id"], {"generation.progress"})
        worker = servers.workers[-1]
        worker.send_signal(signal.SIGTERM)
        seen = events.until(
            generation["id"], {"generation.succeeded", "generation.failed", "generation.canceled"}
        )
    assert seen[-1]["type"] == "generation.succeeded"
    assert worker.wait(timeout=30) == 0
    servers.start_worker()


def test_fifty_concurrent_submissions_never_overspend(alice: ApiUser) -> None:
    account = account_for(alice.user)
    BillingAccount.objects.filter(pk=account.pk).update(balance=20)  # ten 64x64 jobs at 0.02 each
    body = {"prompt": "tiny", "width": 64, "height": 64, "steps": 20}
    barrier = threading.Barrier(50)
    statuses: list[int] = []

    def post() -> None:
        barrier.wait()
        statuses.append(
            requests.post(
                alice.url("/api/v1/generations"), json=body, headers=alice.headers, timeout=60
            ).status_code
        )

    threads = [threading.Thread(target=post) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(statuses)) == [202, 402]
    assert statuses.count(202) == 10
    account.refresh_from_db()
    assert (
        account.balance == 0
        and account.held
        + sum(
            CreditEntry.objects.filter(account=account, kind=EntryKind.CAPTURE).values_list(
                "credits", flat=True
            )
        )
        == 20
    )
    for generation in Generation.objects.filter(user=alice.user):
        alice.wait_until_done(str(generation.id))
    account.refresh_from_db()
    assert (account.balance, account.held) == (0, 0)

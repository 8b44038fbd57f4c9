"""Real worker processes killed and stopped mid-job; concurrent spending of one balance."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connection, transaction
from PIL import Image as PILImage

from billing.credits import account_for
from billing.models import BillingAccount, CreditEntry, EntryKind
from generations.dispatcher import TickResult, tick
from generations.models import Generation, Image
from tests.conftest import ApiUser, Servers

pytestmark = pytest.mark.live

LONG = {"prompt": "a long render", "width": 512, "height": 512, "steps": 150}
TWO_SMALL = {"prompt": "two boats", "width": 128, "height": 128, "steps": 12, "n": 2}


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


def replace_worker_and_requeue(servers: Servers) -> None:
    """A new worker, and the dispatcher's reconciler re-queues the dead one's job."""
    servers.start_worker()
    deadline = time.monotonic() + 30
    while reconcile().requeued == 0:
        assert time.monotonic() < deadline, "the reconciler never re-queued the job"
        time.sleep(0.5)


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
        replace_worker_and_requeue(servers)
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


def lock_waits() -> int:
    """Connections to this database waiting for a row lock (read afresh: PostgreSQL keeps one
    snapshot of the activity view per transaction)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


def originals_since(started: float, generation_id: str) -> set[Path]:
    """This generation's originals written since ``started`` (other tests' jobs may write too):
    each PNG names its generation in its embedded parameters."""
    recent = [
        p for p in (Path(settings.MEDIA_ROOT) / "images").rglob("*.png") if p.stat().st_mtime >= started
    ]
    return {p for p in recent if generation_id in PILImage.open(p).info.get("parameters", "")}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="holds a row lock another process waits on")
def test_a_worker_killed_after_writing_its_images_but_before_committing_runs_the_job_once(
    servers: Servers, alice: ApiUser
) -> None:
    """The final transaction (status, images, captured credits) locks the account's row, which
    nothing else in the job touches: while this test holds that lock, the worker renders, writes
    every file and then waits inside that transaction, uncommitted. It is killed there."""
    before = account_for(alice.user).balance
    started = time.time() - 1
    with alice.events() as events:
        events.next()
        victim = servers.workers[-1]
        with transaction.atomic():
            generation = submit(alice, TWO_SMALL)
            BillingAccount.objects.select_for_update().get(user=alice.user)
            wait_until(lambda: lock_waits() > 0, "the worker waiting inside its final transaction")
            assert len(originals_since(started, generation["id"])) == 2, (
                "both images are written before the commit"
            )
            victim.send_signal(signal.SIGKILL)
            victim.wait()
        assert Generation.objects.get(pk=generation["id"]).status == "running"  # nothing committed
        replace_worker_and_requeue(servers)
        seen = events.until(generation["id"], {"generation.succeeded", "generation.failed"})
    assert seen[-1]["type"] == "generation.succeeded"
    assert [e["type"] for e in seen].count("generation.succeeded") == 1
    row = Generation.objects.get(pk=generation["id"])
    images = Image.objects.filter(generation=row)
    assert sorted(images.values_list("index", flat=True)) == [0, 1]
    assert all((Path(settings.MEDIA_ROOT) / image.original).exists() for image in images)
    captures = CreditEntry.objects.filter(generation=row, kind=EntryKind.CAPTURE)
    assert [c.credits for c in captures] == [row.credits_held]
    account = BillingAccount.objects.get(user=alice.user)
    assert (account.balance, account.held) == (before - row.credits_held, 0)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not seen"
        time.sleep(0.05)


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

"""A real Redis killed and restarted empty under load: every generation still succeeds, once, with
its images and its credits settled."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from accounts.models import User
from accounts.services import api_key_create
from billing.credits import account_for
from billing.models import CreditEntry, EntryKind
from generations.models import Generation, Image
from scripts.private_redis import free_port, start_redis
from tests.conftest import ROOT, child_env, set_plan_limits, stop, wait_for

pytestmark = pytest.mark.live

TERMINAL = ("succeeded", "failed", "canceled")


@pytest.fixture
def own_redis_stack(
    tmp_path: Path, transactional_db: None
) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    """Web, worker and dispatcher processes on a private Redis that this test may kill."""
    redis_port = free_port()
    redis = start_redis(redis_port, tmp_path / "redis", persist=False)
    env = dict(child_env(), REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", ATELIER_DISPATCH_INTERVAL="0.5")
    port = free_port()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=ROOT,
            env=env,
        ),
        subprocess.Popen([sys.executable, "manage.py", "gpu_worker"], cwd=ROOT, env=env),
        subprocess.Popen([sys.executable, "manage.py", "dispatcher"], cwd=ROOT, env=env),
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(url + "/accounts/login/", timeout=2).status_code == 200, 60, "web")
        yield url, redis_port, redis
    finally:
        for process in processes:
            stop(process)
        stop(redis)


@pytest.mark.timeout(900)  # a stack of its own, started and restarted: slow on a loaded machine
def test_every_generation_succeeds_once_after_redis_restarts_empty(
    own_redis_stack: tuple[str, int, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    url, redis_port, redis = own_redis_stack
    set_plan_limits("pro", max_concurrent=3, max_pending=40)
    user = User.objects.create_user("outage")
    _, key = api_key_create(user=user)
    headers = {"Authorization": f"Bearer {key}"}
    body = {"prompt": "through the storm", "width": 128, "height": 128, "steps": 20}

    def submit() -> int:
        return requests.post(url + "/api/v1/generations", json=body, headers=headers, timeout=30).status_code

    assert [submit() for _ in range(12)] == [202] * 12
    wait_for(lambda: Generation.objects.filter(user=user, status="succeeded").exists(), 240, "first job")
    # Kill Redis mid-load; it comes back empty, as a Redis without persistence does.
    redis.kill()
    redis.wait()
    during = [submit() for _ in range(3)]
    assert during == [202] * 3, "submissions are accepted while Redis is down (the DB keeps them)"
    time.sleep(1)
    replacement = start_redis(redis_port, tmp_path / "redis-again", persist=False)
    try:
        assert [submit() for _ in range(3)] == [202] * 3
        deadline = time.monotonic() + 300
        while Generation.objects.filter(user=user).exclude(status__in=TERMINAL).exists():
            assert time.monotonic() < deadline, list(
                Generation.objects.filter(user=user)
                .exclude(status__in=TERMINAL)
                .values_list("status", flat=True)
            )
            time.sleep(0.5)
        rows = Generation.objects.filter(user=user)
        ids = sorted(rows.values_list("id", flat=True))
        assert len(ids) == 18
        assert sorted(set(rows.values_list("status", flat=True))) == ["succeeded"]
        # One image per generation: a job delivered twice (re-enqueued after the restart) is not
        # rendered into a second set of rows.
        images = Image.objects.filter(generation__user=user)
        assert sorted(images.values_list("generation_id", flat=True)) == ids
        assert set(images.values_list("index", flat=True)) == {0}
        # Credits: each generation captured once, nothing left held.
        account = account_for(user)
        assert account.held == 0
        captures = CreditEntry.objects.filter(account=account, kind=EntryKind.CAPTURE)
        assert sorted(captures.values_list("generation_id", flat=True)) == ids
    finally:
        stop(replacement)

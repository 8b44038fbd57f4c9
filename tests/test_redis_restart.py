"""A real Redis killed and restarted empty under load: every generation still ends."""

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
from generations.models import Generation
from scripts.private_redis import free_port, start_redis
from tests.conftest import ROOT, child_env, set_plan_limits, stop, wait_for

pytestmark = pytest.mark.live

TERMINAL = ("succeeded", "failed", "canceled")


@pytest.fixture
def own_redis_stack(tmp_path: Path, transactional_db: None) -> Iterator[tuple[str, int, dict[str, str]]]:
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
    holder = {"redis": redis}
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(url + "/accounts/login/", timeout=2).status_code == 200, 60, "web")
        yield url, redis_port, env
    finally:
        for process in processes:
            stop(process)
        stop(holder["redis"])


def test_every_generation_ends_after_redis_restarts_empty(
    own_redis_stack: tuple[str, int, dict[str, str]], tmp_path: Path
) -> None:
    url, redis_port, _ = own_redis_stack
    set_plan_limits("pro", max_concurrent=3, max_pending=40)
    user = User.objects.create_user("outage")
    _, key = api_key_create(user=user)
    headers = {"Authorization": f"Bearer {key}"}
    body = {"prompt": "through the storm", "width": 128, "height": 128, "steps": 20}

    def submit() -> int:
        return requests.post(url + "/api/v1/generations", json=body, headers=headers, timeout=30).status_code

    assert [submit() for _ in range(12)] == [202] * 12
    wait_for(lambda: Generation.objects.filter(user=user, status="succeeded").exists(), 60, "first job")
    # Kill Redis mid-load; it comes back empty, as a Redis without persistence does.
    subprocess.run(["pkill", "-9", "-f", f"redis-server.*:{redis_port}|--port {redis_port}"], check=False)
    during = [submit() for _ in range(3)]
    assert during == [202] * 3, "submissions are accepted while Redis is down (the DB keeps them)"
    time.sleep(1)
    replacement = start_redis(redis_port, tmp_path / "redis-again", persist=False)
    try:
        assert [submit() for _ in range(3)] == [202] * 3
        deadline = time.monotonic() + 120
        while Generation.objects.filter(user=user).exclude(status__in=TERMINAL).exists():
            assert time.monotonic() < deadline, list(
                Generation.objects.filter(user=user)
                .exclude(status__in=TERMINAL)
                .values_list("status", flat=True)
            )
            time.sleep(0.5)
        rows = Generation.objects.filter(user=user)
        assert rows.count() == 18
        assert rows.filter(status="succeeded").count() >= 15
    finally:
        stop(replacement)

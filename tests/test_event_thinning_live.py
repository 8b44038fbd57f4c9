"""Event thinning with real processes: a worker whose channel layer reaches Redis through a proxy
that delays every packet, a web process and a WebSocket client on the same Redis directly. The
worker makes progress far faster than its events can leave: previews go, then all but the latest
progress of each generation, and every change of status still reaches the client."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from accounts.services import api_key_create
from generations.workers import serving_workers
from ops.metrics import parse
from scripts.private_redis import free_port, start_redis
from tests.conftest import ROOT, ApiUser, child_env, make_user, set_plan_limits, stop, wait_for, web_process
from tests.delay_proxy import DelayProxy

pytestmark = pytest.mark.live
STEPS = 20
TERMINAL = {"generation.succeeded", "generation.failed", "generation.canceled"}


@dataclass
class LaggingStack:
    url: str
    proxy: DelayProxy


@pytest.fixture
def lagging_stack(tmp_path: Path, transactional_db: None) -> Iterator[LaggingStack]:
    redis_port = free_port()
    server = start_redis(redis_port, tmp_path / "redis", persist=False)
    direct = f"redis://127.0.0.1:{redis_port}/0"
    proxy = DelayProxy(redis_port, delay=0.2)  # a group send: three round trips, 1.2 s
    env = dict(child_env(), REDIS_URL=direct)
    worker_env = dict(
        env,
        CHANNEL_REDIS_URL=proxy.url,  # only the worker's events cross the slow link
        ATELIER_PROGRESS_INTERVAL="0",  # a progress event (with a preview) every step
        ATELIER_EVENT_LAG_PREVIEWS="0.2",
        ATELIER_EVENT_LAG_PROGRESS="0.6",
    )
    worker = subprocess.Popen([sys.executable, "manage.py", "gpu_worker"], cwd=ROOT, env=worker_env)
    try:
        with web_process(env, "lagging web") as url:
            connection = redis.Redis.from_url(direct)
            wait_for(lambda: bool(serving_workers(connection)), 120, "gpu_worker")
            yield LaggingStack(url=url, proxy=proxy)
    finally:
        stop(worker)
        proxy.close()
        stop(server)


def collect(stream: Any, ids: set[str], timeout: float = 180) -> dict[str, list[dict[str, Any]]]:
    """Every event of these generations until each has had a terminal one."""
    seen: dict[str, list[dict[str, Any]]] = {generation_id: [] for generation_id in ids}
    deadline = time.monotonic() + timeout
    while any(not events or events[-1]["type"] not in TERMINAL for events in seen.values()):
        event = stream.next(timeout=max(0.1, deadline - time.monotonic()))
        if event.get("id") in seen:
            seen[event["id"]].append(event)
    return seen


def metrics(url: str) -> dict[str, float]:
    return parse(requests.get(url + "/metrics", timeout=30).text)


def test_a_lagging_event_path_thins_progress_and_previews_but_delivers_every_status(
    lagging_stack: LaggingStack,
) -> None:
    set_plan_limits("pro", max_concurrent=3, max_pending=20)
    user = make_user("laggard")
    owner = ApiUser(user=user, key=api_key_create(user=user, name="tests")[1], base_url=lagging_stack.url)
    before = metrics(lagging_stack.url)
    with owner.events() as stream:
        assert stream.next()["type"] == "snapshot"
        ids = set()
        for n in range(3):
            body = {"prompt": f"a red circle {n}", "width": 64, "height": 64, "steps": STEPS, "seed": n}
            response = owner.post("/api/v1/generations", json=body)
            assert response.status_code == 202, response.text
            ids.add(response.json()["id"])
        seen = collect(stream, ids)

    for events in seen.values():
        types = [event["type"] for event in events]
        assert types[-1] == "generation.succeeded", types  # every generation's end reached its owner
        assert types.count("generation.started") == 1, types
        assert "generation.queued" in types
        progress = [event for event in events if event["type"] == "generation.progress"]
        assert types.index("generation.started") < types.index("generation.progress")
        assert [event["step"] for event in progress] == sorted(event["step"] for event in progress)
        assert progress[-1]["step"] == STEPS  # the latest progress is kept
    delivered = [
        event for events in seen.values() for event in events if event["type"] == "generation.progress"
    ]
    assert len(delivered) < len(seen) * STEPS  # thinned (a job that ran before the lag built up keeps all)
    assert any("preview" not in event for event in delivered)

    def thinned(kind: str) -> float:
        now = metrics(lagging_stack.url)
        key = f'atelier_events_thinned_total{{dropped="{kind}"}}'
        return now.get(key, 0.0) - before.get(key, 0.0)

    wait_for(lambda: thinned("progress") > 0 and thinned("preview") > 0, 30, "the thinned counts")
    assert thinned("progress") + len(delivered) >= 3 * STEPS  # every step made was sent or counted
    print(  # the numbers behind the report
        f"progress delivered {len(delivered)} of {3 * STEPS} steps, "
        f"{sum('preview' in event for event in delivered)} with a preview; "
        f"thinned: {thinned('preview'):g} previews, {thinned('progress'):g} progress"
    )

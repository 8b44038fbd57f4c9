"""A real web process sheds load when the database or Redis is slow (ops/load_shedding.py): it
answers 503 overloaded with Retry-After instead of piling up requests, nothing is stored or
charged, /healthz keeps answering and /readyz says degraded; once the dependency is back, so are
the answers."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import requests
from django.conf import settings
from django.db import connection

from accounts.models import User
from accounts.services import api_key_create
from billing.credits import account_for
from generations.models import Generation
from ops.metrics import parse
from tests.conftest import child_env, make_user, set_plan_limits, wait_for, web_process
from tests.delay_proxy import DelayProxy

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("no_session_workers")]
RETRY_AFTER = "3"
LIMITS = {
    "ATELIER_WEB_MAX_CONCURRENCY": "2",  # two requests at once per process ...
    "ATELIER_WEB_MAX_WAITING": "1",  # ... one more may wait, half a second
    "ATELIER_WEB_QUEUE_SECONDS": "0.5",
    "ATELIER_OVERLOAD_RETRY_AFTER": RETRY_AFTER,
    "DATABASE_STATEMENT_TIMEOUT": "3000",
    "ATELIER_METRICS_ALLOW": "127.0.0.1",
}
BODY = {"prompt": "a blue square", "width": 64, "height": 64, "steps": 4}


def submitter(name: str) -> tuple[User, dict[str, str]]:
    set_plan_limits("pro", max_concurrent=20, max_pending=40)
    user = make_user(name)
    return user, {"Authorization": f"Bearer {api_key_create(user=user, name='tests')[1]}"}


def submit(url: str, headers: dict[str, str], n: int = 0) -> requests.Response:
    # The client's own timeout is generous: a request that hangs fails the test instead of waiting.
    return requests.post(url + "/api/v1/generations", json={**BODY, "seed": n}, headers=headers, timeout=30)


def stored(user: User) -> tuple[int, int]:
    """The user's generations and held credits: what a refused request must leave alone."""
    return Generation.objects.filter(user=user).count(), account_for(user).held


def assert_overloaded(response: requests.Response, reason: str | None = None) -> str:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == RETRY_AFTER
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "overloaded"
    if reason is not None:
        assert error["details"]["reason"] == reason
    return str(error["details"]["reason"])


@contextmanager
def generations_locked() -> Iterator[None]:
    """Another client holds the generations table: every statement on it waits for the lock (a
    slow database as the web tier sees it)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        holder = sqlite3.connect(db["NAME"], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # every writer waits for the file
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    conninfo = (
        f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} dbname={db['NAME']} user={db['USER']}"
    )
    with psycopg.connect(conninfo) as locker:
        locker.execute("LOCK TABLE generations_generation IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            locker.rollback()


def shed(url: str, reason: str) -> float:
    values = parse(requests.get(url + "/metrics", timeout=30).text)
    return values.get(f'atelier_load_shed_total{{reason="{reason}"}}', 0.0)


def test_a_slow_database_gets_503_overloaded_and_the_web_process_recovers(transactional_db: None) -> None:
    user, headers = submitter("patient")
    env = {**child_env(), **LIMITS}
    if connection.settings_dict["ENGINE"].endswith("sqlite3"):
        env["DATABASE_STATEMENT_TIMEOUT"] = "3000"  # SQLite's busy timeout, from the same setting
    with web_process(env, "web with small limits") as url:
        assert submit(url, headers).status_code == 202
        before = stored(user)
        shed_before = {reason: shed(url, reason) for reason in ("concurrency", "database")}
        with generations_locked(), ThreadPoolExecutor(max_workers=6) as pool:
            answers = pool.map(lambda n: submit(url, headers, n), range(1, 7))
            assert requests.get(url + "/healthz", timeout=10).status_code == 200

            def readyz_degraded() -> bool:
                body = requests.get(url + "/readyz", timeout=10).json()
                return body["status"] == "degraded" and any("overloaded" in r for r in body["reasons"])

            wait_for(readyz_degraded, 30, "/readyz to say degraded")
            reasons = [assert_overloaded(response) for response in answers]
        assert set(reasons) == {"concurrency", "database"}  # turned away, or timed out on the lock
        assert stored(user) == before  # nothing stored, nothing held

        assert submit(url, headers, 7).status_code == 202  # the database answers again: so do we
        assert requests.get(url + "/api/v1/generations", headers=headers, timeout=30).status_code == 200
        for reason in ("concurrency", "database"):
            assert shed(url, reason) > shed_before[reason]


def test_a_slow_redis_degrades_then_sheds_and_the_web_process_recovers(transactional_db: None) -> None:
    user, headers = submitter("redis-patient")
    redis_port = int(settings.REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    database = settings.REDIS_URL.rsplit("/", 1)[1]
    with DelayProxy(redis_port) as proxy:
        env = {
            **child_env(),
            **LIMITS,
            "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/{database}",
            "REDIS_SOCKET_TIMEOUT": "1",
            "ATELIER_READY_SLOW_MS": "200",
        }
        with web_process(env, "web behind a slow Redis") as url:
            assert submit(url, headers).status_code == 202
            before = stored(user)

            proxy.delay = 0.15  # slow, within the deadline: ready, but degraded
            body = requests.get(url + "/readyz", timeout=30).json()
            assert body["checks"]["redis"]["ok"]
            assert body["status"] == "degraded"
            assert any(reason.startswith("redis: slow") for reason in body["reasons"])

            proxy.delay = 2.0  # past the deadline: refused quickly, with a time to come back
            assert requests.get(url + "/healthz", timeout=10).status_code == 200
            assert_overloaded(submit(url, headers, 1), "redis")
            assert stored(user) == before

            proxy.delay = 0.0
            wait_for(lambda: submit(url, headers, 2).status_code == 202, 30, "submissions after Redis")

"""Shared fixtures: users and keys, real web + worker processes, a WebSocket helper."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.conf import settings
from django.db import connection
from websockets.sync.client import ClientConnection, connect

from accounts.models import User
from accounts.services import api_key_create
from generations.workers import serving_workers
from scripts.private_redis import free_port
from tests.api_support import Api
from tests.browser_support import browser
from tests.s3_support import s3_server
from tests.smtp_support import mail_through_smtp, smtp_server
from tests.webhook_support import private_targets_allowed, receiver

__all__ = ["browser", "mail_through_smtp", "private_targets_allowed", "receiver", "s3_server", "smtp_server"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def clean_redis() -> None:
    """Stale jobs from an earlier run would point at rows that no longer exist."""
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> None:
    """Row ids repeat between tests (rolled back), so their rate-limit counters must not carry over."""
    connection_ = redis.Redis.from_url(settings.REDIS_URL)
    keys = [*connection_.scan_iter("atelier:rl:*"), *connection_.scan_iter("atelier:login-fail:*")]
    if keys:
        connection_.delete(*keys)


@pytest.fixture(autouse=True)
def idle_workers_before_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """A live test may end with jobs still queued or rendering. Before pytest-django empties the
    tables (TRUNCATE), stop feeding the workers and let them finish, or PostgreSQL may find the
    worker's transaction and the TRUNCATE deadlocked on each other."""
    if "live" not in request.keywords or "transactional_db" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("transactional_db")  # set up first, so this tears down before it
    yield
    from generations import queues
    from generations.models import Generation

    drop_waiting_jobs()
    for generation in Generation.objects.filter(status="running"):
        queues.request_cancel(generation)
    deadline = time.monotonic() + 60
    while Generation.objects.filter(status="running").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)  # the last event and webhook rows are written just after the transition


def drop_waiting_jobs() -> None:
    """Empties the generation queues and cancels what waited in them, so that no worker takes a
    job of a test that has ended."""
    from django.utils import timezone

    from generations.models import Generation

    client = redis.Redis.from_url(settings.REDIS_URL)
    queue_keys = list(client.scan_iter("rq:queue:gen.*"))
    if queue_keys:
        client.delete(*queue_keys)
    waiting = Generation.objects.filter(status__in=["pending", "queued"])
    waiting.update(status="canceled", finished_at=timezone.now())


# The owner / other user / anonymous trio: every endpoint is tested against all three
# (tests/test_route_authorization.py holds every API route to it). A test file that needs plain
# users may define its own `owner`.
@pytest.fixture
def make_api() -> Callable[[str], Api]:
    def make(username: str) -> Api:
        return Api(User.objects.create_user(username, password="x"))

    return make


@pytest.fixture
def owner(make_api: Callable[[str], Api]) -> Api:
    return make_api("owner")


@pytest.fixture
def other(make_api: Callable[[str], Api]) -> Api:
    return make_api("other")


@pytest.fixture
def anonymous() -> Api:
    return Api(None)


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(DATABASE_URL=database_url(), REDIS_URL=settings.REDIS_URL, MEDIA_ROOT=str(settings.MEDIA_ROOT))
    env["ATELIER_PROGRESS_INTERVAL"] = str(settings.ATELIER_PROGRESS_INTERVAL)
    env["ATELIER_LORA_DIR"] = str(settings.ATELIER_LORA_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    # Live tests that expect every preview must not see them thinned on a busy test machine
    # (generations/publisher.py); the thinning tests set their own lags.
    env.setdefault("ATELIER_EVENT_LAG_PREVIEWS", "60")
    env.setdefault("ATELIER_EVENT_LAG_PROGRESS", "60")
    return env


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout}s")


SESSION_WORKERS: list[subprocess.Popen[bytes]] = []  # every worker the shared stack started


@pytest.fixture
def no_session_workers(request: pytest.FixtureRequest) -> Iterator[None]:
    """For a test that needs its jobs left alone (queue order, a job run in-process): the shared
    stack's workers, when an earlier test started them, are paused (SIGSTOP) meanwhile, as if
    none ran. They are idle between tests (idle_workers_before_flush); they go on again before
    the tables are emptied (a paused worker's lock would deadlock the TRUNCATE), once the jobs the
    test left queued are dropped."""
    request.getfixturevalue("transactional_db")  # set up first, so this tears down before it
    paused = [p for p in SESSION_WORKERS if p.poll() is None]
    for process in paused:
        process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        if paused:  # the test's jobs are still queued: resumed workers would run them mid-TRUNCATE
            drop_waiting_jobs()
        for process in paused:
            process.send_signal(signal.SIGCONT)


@dataclass
class Servers:
    url: str
    ws_url: str
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self, *args: str) -> subprocess.Popen[bytes]:
        before = serving_workers()
        process = subprocess.Popen([sys.executable, "manage.py", "gpu_worker", *args], cwd=ROOT, env=self.env)
        self.workers.append(process)
        SESSION_WORKERS.append(process)
        wait_for(lambda: bool(serving_workers() - before), 120, "gpu_worker")
        return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def web_process(env: dict[str, str], what: str = "web", port: int = 0) -> Iterator[str]:
    """A daphne web process of its own with ``env`` (on ``port``, or a free one); its URL, once it
    answers, while the block runs."""
    port = port or free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(url + "/accounts/login/", timeout=2).status_code == 200, 60, what)
        yield url
    finally:
        stop(web)


@pytest.fixture(scope="session")
def servers(django_db_setup: None, django_db_blocker: Any) -> Iterator[Servers]:
    env = child_env()
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    live = Servers(url=url, ws_url=f"ws://127.0.0.1:{port}/ws/v1/events/", env=env)
    try:
        wait_for(lambda: requests.get(url + "/accounts/login/", timeout=2).status_code == 200, 60, "web")
        live.start_worker()
        yield live
    finally:
        for process in [*live.workers, web]:
            stop(process)


@dataclass
class ApiUser:
    user: User
    key: str
    base_url: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base_url + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url(path), headers=self.headers, timeout=30, **kwargs)

    def post(self, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        merged = {**self.headers, **(headers or {})}
        return requests.post(self.url(path), headers=merged, timeout=60, **kwargs)

    def events(self) -> EventStream:
        return EventStream(
            connect(self.base_url.replace("http", "ws") + "/ws/v1/events/", additional_headers=self.headers)
        )

    def wait_until_done(self, generation_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.get(f"/api/v1/generations/{generation_id}")
            if response.status_code == 429:  # a polite client waits as told
                time.sleep(min(float(response.headers.get("Retry-After", "1")), 5))
                continue
            body: dict[str, Any] = response.json()
            if body["status"] in ("succeeded", "failed", "canceled"):
                return body
            time.sleep(0.2)
        raise TimeoutError(f"generation {generation_id} did not finish")


class EventStream:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    def next(self, timeout: float = 60) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(self.ws.recv(timeout=timeout))
        return message

    def until(self, generation_id: str, types: set[str], timeout: float = 120) -> list[dict[str, Any]]:
        """Events of one generation up to and including the first whose type is in ``types``."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(timeout=max(0.1, deadline - time.monotonic()))
            if event.get("id") != generation_id:
                continue
            seen.append(event)
            if event["type"] in types:
                return seen

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def set_plan_limits(slug: str, **limits: Any) -> None:
    """Change a seeded plan (transactional tests empty the tables, so seed them again first)."""
    from billing.credits import plan_by_slug
    from billing.models import Plan

    plan_by_slug(slug)
    Plan.objects.filter(slug=slug).update(**limits)


def make_user(username: str) -> User:
    return User.objects.create_user(username=username, password="correct horse battery staple")


@pytest.fixture
def make_api_user(servers: Servers, transactional_db: None) -> Callable[[str], ApiUser]:
    def make(username: str) -> ApiUser:
        user = make_user(username)
        _, key = api_key_create(user=user, name="tests")
        return ApiUser(user=user, key=key, base_url=servers.url)

    return make


@pytest.fixture
def alice(make_api_user: Callable[[str], ApiUser]) -> ApiUser:
    return make_api_user("alice")


@pytest.fixture
def bob(make_api_user: Callable[[str], ApiUser]) -> ApiUser:
    return make_api_user("bob")

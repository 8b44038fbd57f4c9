"""The HTTP tier as shipped: gunicorn with config/gunicorn.py serves pages and the API."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests

from accounts.services import api_key_create
from billing.models import CreditEntry
from scripts.private_redis import free_port
from tests.conftest import ROOT, ApiUser, child_env, make_user, stop, wait_for

pytestmark = pytest.mark.live


@pytest.fixture
def gunicorn_url(transactional_db: None) -> Iterator[str]:
    port = free_port()
    env = {**child_env(), "WEB_CONCURRENCY": "1", "WEB_THREADS": "2"}
    command = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "-b", f"127.0.0.1:{port}"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(url + "/accounts/login/", timeout=2).status_code == 200, 60, "gunicorn")
        yield url
    finally:
        stop(process)


def test_it_takes_a_submission_with_all_its_headers_and_its_hold(gunicorn_url: str) -> None:
    user = make_user("gunicorn")
    _, key = api_key_create(user=user)
    api = ApiUser(user=user, key=key, base_url=gunicorn_url)
    body = {"prompt": "a lamp in the fog", "width": 64, "height": 64, "steps": 2}

    first = api.post("/api/v1/generations", json=body, headers={"Idempotency-Key": "lamp-1"})
    assert first.status_code == 202, first.text
    assert first.headers["API-Version"] and int(first.headers["RateLimit-Remaining"]) >= 0
    generation = first.json()
    assert generation["status"] == "queued" and generation["queue_position"] >= 1
    again = api.post("/api/v1/generations", json=body, headers={"Idempotency-Key": "lamp-1"})
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["id"] == generation["id"]

    assert api.get(first.headers["Location"]).json()["id"] == generation["id"]
    hold = CreditEntry.objects.get(generation_id=generation["id"])
    assert hold.kind == "hold" and hold.credits > 0
    assert requests.get(gunicorn_url + "/api/v1/models", timeout=10).status_code == 401

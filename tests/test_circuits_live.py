"""A model whose weights cannot be loaded, with a real web process and a real worker: its circuit
opens, users are told (503 model_unavailable, Retry-After, nothing charged), the fallback runs,
and once the weights are repaired a half-open probe closes the circuit."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.conf import settings

from accounts.services import api_key_create
from billing.credits import account_for
from core.model_catalog import BUILTIN_MODEL, BUILTIN_WEIGHTS
from generations.models import Generation
from tests.conftest import ApiUser, Servers, child_env, make_user, stop, web_process

pytestmark = pytest.mark.live

OPEN_SECONDS = 8
BODY = {"prompt": "a red circle on a blue background", "width": 64, "height": 64, "steps": 4}


@pytest.fixture
def fragile_site(tmp_path: Path, transactional_db: None) -> Iterator[Servers]:
    """A web process and a worker whose catalogue has "fragile" (an empty folder so far), which
    falls back to the built-in model."""
    connection = redis.Redis.from_url(settings.REDIS_URL)
    stale = list(connection.scan_iter("atelier:circuit:*"))
    if stale:
        connection.delete(*stale)
    (tmp_path / "fragile").mkdir()
    models = [
        {
            "name": BUILTIN_MODEL,
            "path": str(BUILTIN_WEIGHTS),
            "pool": "tiny",
            "default_side": 256,
            "max_side": 512,
        },
        {"name": "fragile", "path": str(tmp_path / "fragile"), "pool": "fragile", "fallback": BUILTIN_MODEL},
    ]
    env = {
        **child_env(),
        "ATELIER_MODELS": json.dumps(models),
        "ATELIER_DEFAULT_MODEL": BUILTIN_MODEL,
        "ATELIER_CIRCUIT_LOAD_FAILURES": "2",
        "ATELIER_CIRCUIT_OPEN_SECONDS": str(OPEN_SECONDS),
    }
    with web_process(env, "fragile web") as url:
        site = Servers(url=url, ws_url=url.replace("http", "ws") + "/ws/v1/events/", env=env)
        try:
            site.start_worker("--pools", "tiny,fragile")
            yield site
        finally:
            for worker in site.workers:
                stop(worker)


def api_user(site: Servers, name: str) -> ApiUser:
    user = make_user(name)
    _, key = api_key_create(user=user, name="tests")
    return ApiUser(user=user, key=key, base_url=site.url)


def submit(user: ApiUser, body: dict[str, Any]) -> requests.Response:
    return user.post("/api/v1/generations", json=body)


def test_a_model_that_fails_to_load_opens_its_circuit_falls_back_and_a_probe_closes_it(
    fragile_site: Servers, tmp_path: Path
) -> None:
    carol = api_user(fragile_site, "carol")
    strict = {**BODY, "model": "fragile", "allow_fallback": False}

    # The worker cannot load it (once at start, then per job): each job fails, until it opens.
    refused = None
    for _ in range(3):
        response = submit(carol, strict)
        if response.status_code == 503:
            refused = response
            break
        assert response.status_code == 202, response.text
        done = carol.wait_until_done(response.json()["id"])
        assert (done["status"], done["error"]["code"]) == ("failed", "model_unavailable")
    assert refused is not None, "the circuit never opened"

    balance = account_for(carol.user).balance
    rows = Generation.objects.count()
    assert refused.json()["error"]["code"] == "model_unavailable"
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= OPEN_SECONDS
    ready = requests.get(fragile_site.url + "/readyz", timeout=10).json()
    assert any(reason.startswith("model fragile: circuit open") for reason in ready["reasons"])

    # Allowed to, it runs on the fallback, which says so.
    moved = submit(carol, {**BODY, "model": "fragile", "seed": 5})
    assert moved.status_code == 202, moved.text
    done = carol.wait_until_done(moved.json()["id"])
    assert (done["status"], done["model"], done["fallback_from"]) == ("succeeded", BUILTIN_MODEL, "fragile")
    assert Generation.objects.get(pk=done["id"]).model_name == BUILTIN_MODEL

    assert submit(carol, strict).status_code == 503
    assert Generation.objects.count() == rows + 1  # the fallback job only
    assert account_for(carol.user).balance == balance - Generation.objects.get(pk=done["id"]).credits_held

    # Staff repair the weights; after Retry-After the next submission is the probe.
    shutil.copytree(BUILTIN_WEIGHTS, tmp_path / "fragile", dirs_exist_ok=True)
    time.sleep(int(submit(carol, strict).headers["Retry-After"]))
    probe = submit(carol, strict)
    assert probe.status_code == 202, probe.text
    done = carol.wait_until_done(probe.json()["id"])
    assert (done["status"], done["model"], done["fallback_from"]) == ("succeeded", "fragile", None)
    after = submit(carol, strict)
    assert after.status_code == 202, after.text
    assert carol.wait_until_done(after.json()["id"])["status"] == "succeeded"
    ready = requests.get(fragile_site.url + "/readyz", timeout=10).json()
    assert not any(reason.startswith("model fragile") for reason in ready["reasons"])

"""A repeated Idempotency-Key cannot run a job twice while the first request still waits for it
(issue 17, Medium 9): the in-progress marker lives as long as the longest wait of any route."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from accounts.services import api_key_create
from api import openai_compat
from core.redis import redis_client
from generations.models import Generation
from generations.waiting import MAX_WAIT_SECONDS

LONGEST_WAIT = max(openai_compat.WAIT_SECONDS, MAX_WAIT_SECONDS)  # /v1/images/* waits 120 s


@pytest.mark.django_db(transaction=True)
def test_a_retry_with_the_same_key_while_the_first_waits_does_not_run_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(openai_compat, "WAIT_SECONDS", 2)  # no worker here: the first one waits
    user = User.objects.create_user("retrier")
    _, key = api_key_create(user=user)
    body = {"prompt": "a lighthouse", "size": "64x64"}

    def post() -> Any:
        client = Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_IDEMPOTENCY_KEY="order-17")
        return client.post("/v1/images/generations", body, content_type="application/json")

    thread = threading.Thread(target=post)
    thread.start()
    slot = f"atelier:idem:{user.pk}:{hashlib.sha256(b'order-17').hexdigest()}"
    until = time.monotonic() + 10
    while not Generation.objects.exists():
        assert time.monotonic() < until
        time.sleep(0.05)
    # The first request is waiting for its images; its claim must outlast that wait
    assert redis_client().ttl(slot) > LONGEST_WAIT
    retry = post()
    assert retry.status_code == 409 and retry.json()["error"]["code"] == "idempotency_key_in_use"
    thread.join(30)
    assert Generation.objects.count() == 1

"""The result cache with real processes: a repeated seeded request is answered while no worker
runs, with the same pixels, marked cached and charged nothing; other requests go to the queue."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from billing.credits import account_for
from billing.models import CreditEntry
from generations.models import Generation, GenerationStatus, Image
from ops.metrics import parse
from tests.conftest import ApiUser, Servers, stop

pytestmark = pytest.mark.live

SEEDED = {"prompt": "a red circle on a blue background", "width": 64, "height": 64, "steps": 4, "seed": 1234}


def pixels(user: ApiUser, generation: dict[str, Any]) -> list[bytes]:
    return [user.get(image["url"]).content for image in generation["images"]]


def test_a_repeated_seeded_request_is_answered_from_the_cache_without_a_worker(
    servers: Servers, alice: ApiUser
) -> None:
    first = alice.post("/api/v1/generations", json=SEEDED)
    assert first.status_code == 202, first.text
    done = alice.wait_until_done(first.json()["id"])
    assert (done["status"], done["cached"]) == ("succeeded", False)
    for worker in list(servers.workers):  # nothing may render from here on
        stop(worker)
        servers.workers.remove(worker)
    try:
        balance = account_for(alice.user).balance
        before = parse(requests.get(servers.url + "/metrics", timeout=10).text)
        with alice.events() as events:
            events.next()  # the snapshot of active generations
            again = alice.post("/api/v1/generations", json=SEEDED)
            assert again.status_code == 201, again.text
            body = again.json()
            seen = events.until(body["id"], {"generation.succeeded"}, timeout=30)
        assert (body["status"], body["cached"]) == ("succeeded", True)
        assert body["id"] != done["id"]
        assert [image["seed"] for image in body["images"]] == [image["seed"] for image in done["images"]]
        assert pixels(alice, body) == pixels(alice, done)
        assert seen[-1]["cached"] is True
        assert [image["id"] for image in seen[-1]["images"]] == [image["id"] for image in body["images"]]
        assert account_for(alice.user).balance == balance
        assert not CreditEntry.objects.filter(generation_id=body["id"]).exists()
        assert alice.get(body["url"]).json()["cached"] is True
        after = parse(requests.get(servers.url + "/metrics", timeout=10).text)
        hits = 'atelier_result_cache_requests_total{outcome="hit"}'
        assert after[hits] == before.get(hits, 0) + 1
        assert after["atelier_result_cache_hit_ratio"] > 0

        # Deleting the first generation's image leaves the cached copy whole (shared files).
        kept = pixels(alice, body)
        deleted = requests.delete(
            alice.url(f"/api/v1/images/{done['images'][0]['id']}"), headers=alice.headers, timeout=30
        )
        assert deleted.status_code == 204, deleted.text
        assert not Image.objects.filter(pk=done["images"][0]["id"]).exists()
        assert pixels(alice, body) == kept

        for request in ({**SEEDED, "cache": False}, {k: v for k, v in SEEDED.items() if k != "seed"}):
            queued = alice.post("/api/v1/generations", json=request)
            assert queued.status_code == 202, queued.text
            assert (queued.json()["status"], queued.json()["cached"]) == ("queued", False)
        assert Generation.objects.filter(user=alice.user, status=GenerationStatus.QUEUED).count() == 2
    finally:
        servers.start_worker()

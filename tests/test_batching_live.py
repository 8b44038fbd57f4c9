"""Dynamic batching in the real worker process: each job of a batch looks to its user as if it ran alone."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import pytest

from generations.models import Generation
from tests.conftest import ApiUser, set_plan_limits

pytestmark = pytest.mark.live


def test_jobs_queued_behind_a_busy_worker_run_as_one_batch(alice: ApiUser) -> None:
    set_plan_limits("pro", max_concurrent=8, max_pending=20)
    with alice.events() as stream:
        assert stream.next()["type"] == "snapshot"
        slow = alice.post("/api/v1/generations", json={"prompt": "a long one", "width": 512, "steps": 30})
        assert slow.status_code == 202, slow.text
        quick = []
        for prompt in ("a red kite", "a blue kite", "a green kite"):
            body = {"prompt": prompt, "width": 64, "height": 64, "steps": 6, "seed": 40}
            response = alice.post("/api/v1/generations", json=body)
            assert response.status_code == 202, response.text
            quick.append(response.json()["id"])
        events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        deadline = time.monotonic() + 180
        while not all(any(e["type"] == "generation.succeeded" for e in events[i]) for i in quick):
            event = stream.next(timeout=max(0.1, deadline - time.monotonic()))
            if event.get("id") in quick:
                events[event["id"]].append(event)

    batches = {str(g.id): g.batch_size for g in Generation.objects.filter(pk__in=quick)}
    # The worker was busy with the slow job while the quick ones queued up: they ran together.
    assert set(batches.values()) == {3}, batches
    for generation_id in quick:
        kinds = [e["type"] for e in events[generation_id]]
        running = kinds[kinds.index("generation.started") :]
        assert set(running) == {"generation.started", "generation.progress", "generation.succeeded"}, kinds
        assert running[-1] == "generation.succeeded" and kinds.count("generation.succeeded") == 1
        progress = [e for e in events[generation_id] if e["type"] == "generation.progress"]
        assert progress and progress[-1]["step"] == progress[-1]["steps"]
        assert all(e["preview"].startswith("data:image/jpeg;base64,") for e in progress)
        (image,) = events[generation_id][-1]["images"]
        assert image["seed"] == 40
        assert alice.get(image["url"]).status_code == 200
    # Same seed, different prompts: three different pictures, one per job.
    digests = {Generation.objects.get(pk=i).images.get().sha256 for i in quick}
    assert len(digests) == 3

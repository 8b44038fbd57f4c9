"""Dynamic batching in the real worker process: each job of a batch looks to its user as if it ran alone."""

from __future__ import annotations

import io
import time
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from generations.models import Generation
from tests.conftest import ApiUser, set_plan_limits

pytestmark = pytest.mark.live


def uploaded(alice: ApiUser, picture: PILImage.Image) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    response = alice.post("/api/v1/uploads", files={"file": ("source.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def edit_fields(alice: ApiUser, kind: str, index: int) -> dict[str, Any]:
    """Its own source image (and mask) for each img2img or inpaint job; nothing for txt2img."""
    if kind == "txt2img":
        return {}
    noise = np.random.default_rng(index).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    fields: dict[str, Any] = {
        "input_image": uploaded(alice, PILImage.fromarray(noise)),
        "strength": 0.7,
        "sampler": "euler_a",
    }
    if kind == "inpaint":
        mask = PILImage.new("L", (64, 64), 0)
        mask.paste(255, (8 * index, 8 * index, 8 * index + 32, 8 * index + 32))
        fields["mask_image"] = uploaded(alice, mask)
    return fields


@pytest.mark.parametrize("kind", ["txt2img", "img2img", "inpaint"])
def test_jobs_queued_behind_a_busy_worker_run_as_one_batch(alice: ApiUser, kind: str) -> None:
    set_plan_limits("pro", max_concurrent=8, max_pending=20)
    edits = [edit_fields(alice, kind, index) for index in range(3)]
    with alice.events() as stream:
        assert stream.next()["type"] == "snapshot"
        slow = alice.post("/api/v1/generations", json={"prompt": "a long one", "width": 512, "steps": 30})
        assert slow.status_code == 202, slow.text
        quick = []
        for prompt, fields in zip(("a red kite", "a blue kite", "a green kite"), edits, strict=True):
            body = {"prompt": prompt, "width": 64, "height": 64, "steps": 6, "seed": 40, **fields}
            response = alice.post("/api/v1/generations", json=body)
            assert response.status_code == 202, response.text
            quick.append(response.json()["id"])
        events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        deadline = time.monotonic() + 180
        while not all(any(e["type"] == "generation.succeeded" for e in events[i]) for i in quick):
            event = stream.next(timeout=max(0.1, deadline - time.monotonic()))
            if event.get("id") in quick:
                events[event["id"]].append(event)

    sampler = "default" if kind == "txt2img" else "euler_a"
    rows = Generation.objects.filter(pk__in=quick, kind=kind, sampler=sampler)
    batches = {str(g.id): g.batch_size for g in rows}
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
    # Same seed, different prompts (and sources): three different pictures, one per job.
    digests = {Generation.objects.get(pk=i).images.get().sha256 for i in quick}
    assert len(digests) == 3

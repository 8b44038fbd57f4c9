"""Preemption with a real worker process and the dispatcher's rule: a priority job that waited
stops a free job at a step boundary; the free job resumes where it stopped (the identical image
for a deterministic sampler) or restarts (ancestral), and is charged once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings as django_settings
from PIL import Image as PILImage

from billing.credits import account_for
from billing.models import BillingAccount, CreditEntry, Plan
from generations.models import Generation, Image
from generations.registry import default_model
from generations.workers import all_heartbeats
from tests.conftest import ApiUser, set_plan_limits, wait_for
from tests.dispatcher_support import dispatcher_running

pytestmark = pytest.mark.live

# Long enough on the shared CPU that the dispatcher sees it running, small enough to finish twice.
FREE_JOB = {"prompt": "a red circle on blue", "width": 128, "height": 128, "steps": 60, "seed": 1234}
PRIORITY_JOB = {"prompt": "a green square", "width": 64, "height": 64, "steps": 4}


@pytest.fixture
def users(make_api_user: Callable[[str], ApiUser], settings: Any) -> tuple[ApiUser, ApiUser]:
    """A Free-plan user (free lane) and a Pro user (priority lane); preemption after half a second."""
    settings.ATELIER_PREEMPT_AFTER = 0.5
    # Preemption needs every worker of the pool busy: one free job keeps the shared stack's one
    # worker busy (a worker killed by an earlier test leaves its heartbeat for a few seconds).
    pool = default_model().pool
    wait_for(lambda: len(serving_in(pool)) == 1, 30, f"exactly one serving worker of pool {pool}")
    set_plan_limits("free", api_rate_per_minute=1000)
    free, pro = make_api_user("free_user"), make_api_user("pro_user")
    account = account_for(free.user)
    BillingAccount.objects.filter(pk=account.pk).update(plan=Plan.objects.get(slug="free"))
    return free, pro


def serving_in(pool: str) -> list[str]:
    return [
        name for name, state in all_heartbeats() if state.get("serving") and pool in state.get("pools", [])
    ]


def submit(user: ApiUser, body: dict[str, Any]) -> str:
    response = user.post("/api/v1/generations", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def preempted_run(free: ApiUser, pro: ApiUser, job: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]]]:
    """The free job, stopped for the priority job and run to its end: (free id, priority id,
    the free job's events)."""
    with free.events() as events, dispatcher_running():
        events.next()  # the snapshot
        free_id = submit(free, job)
        events.until(free_id, {"generation.progress"})
        priority_id = submit(pro, PRIORITY_JOB)
        seen = events.until(free_id, {"generation.succeeded", "generation.failed"}, timeout=300)
    pro.wait_until_done(priority_id)
    return free_id, priority_id, seen


def progress_steps(events: list[dict[str, Any]]) -> list[int]:
    return [int(e["step"]) for e in events if e["type"] == "generation.progress"]


def charged_once(generation_id: str) -> None:
    row = Generation.objects.get(pk=generation_id)
    entries = list(CreditEntry.objects.filter(generation=row).values_list("kind", "credits"))
    assert sorted(kind for kind, _ in entries if kind != "release") == ["capture", "hold"], entries
    assert all(credits == 0 for kind, credits in entries if kind == "release"), entries
    assert abs(dict(entries)["capture"]) == row.credits_held > 0


def pixels(generation_id: str) -> np.ndarray:
    image = Image.objects.get(generation_id=generation_id)
    return np.asarray(PILImage.open(Path(django_settings.MEDIA_ROOT) / image.original).convert("RGB"))


def test_a_preempted_free_job_resumes_to_the_identical_image_and_is_charged_once(
    users: tuple[ApiUser, ApiUser],
) -> None:
    free, pro = users
    free_id, priority_id, seen = preempted_run(free, pro, {**FREE_JOB, "sampler": "euler"})

    types = [e["type"] for e in seen]
    assert types.count("generation.preempted") == 1 and types[-1] == "generation.succeeded", types
    preempted = next(e for e in seen if e["type"] == "generation.preempted")
    stopped = preempted["stopped_at_step"]
    assert 0 < stopped < FREE_JOB["steps"] and preempted["resumes_at_step"] == stopped + 1
    after = seen[types.index("generation.preempted") :]
    assert "generation.started" in [e["type"] for e in after]
    # It resumed at the step after the one it stopped at, and no step ran twice.
    assert progress_steps(after)[0] == stopped + 1
    steps = progress_steps(seen)
    assert steps == sorted(set(steps)) and steps[-1] == FREE_JOB["steps"]

    free_row, priority_row = (Generation.objects.get(pk=i) for i in (free_id, priority_id))
    assert priority_row.status == "succeeded"
    assert priority_row.finished_at and free_row.finished_at
    assert priority_row.finished_at < free_row.finished_at
    assert free_row.preemptions == 1 and free_row.attempts == 0
    assert free.get(f"/api/v1/generations/{free_id}").json()["preemptions"] == 1
    charged_once(free_id)

    # The same request run without interruption (the result cache would answer it otherwise).
    reference_id = submit(free, {**FREE_JOB, "sampler": "euler", "cache": False})
    assert free.wait_until_done(reference_id, timeout=300)["status"] == "succeeded"
    assert Generation.objects.get(pk=reference_id).preemptions == 0
    assert np.array_equal(pixels(free_id), pixels(reference_id))


def test_an_ancestral_sampler_restarts_and_is_charged_once(users: tuple[ApiUser, ApiUser]) -> None:
    free, pro = users
    free_id, _, seen = preempted_run(free, pro, {**FREE_JOB, "sampler": "euler_a", "steps": 40})

    types = [e["type"] for e in seen]
    assert types.count("generation.preempted") == 1 and types[-1] == "generation.succeeded", types
    preempted = next(e for e in seen if e["type"] == "generation.preempted")
    assert preempted["resumes_at_step"] == 1  # no point kept: it starts again
    after = seen[types.index("generation.preempted") :]
    assert progress_steps(after)[0] == 1
    assert Generation.objects.get(pk=free_id).preemptions == 1
    charged_once(free_id)

"""Fairness and aging with real worker processes."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from billing.credits import account_for
from billing.models import BillingAccount, Plan
from generations.models import Generation
from tests.conftest import ApiUser, set_plan_limits
from tests.dispatcher_support import dispatcher_running

pytestmark = pytest.mark.live

QUICK = {"prompt": "quick", "width": 64, "height": 64, "steps": 4}


def submit_many(user: ApiUser, count: int, **fields: object) -> list[str]:
    ids = []
    for _ in range(count):
        response = user.post("/api/v1/generations", json={**QUICK, **fields})
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def wait_all(user: ApiUser, ids: list[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    for generation_id in ids:
        user.wait_until_done(generation_id, timeout=max(1, deadline - time.monotonic()))


def max_in_flight(user_id: int) -> int:
    """Most jobs a user had in RQ or running at once, from when each entered its lane to its end."""
    marks = []
    for entered, finished in Generation.objects.filter(user_id=user_id).values_list(
        "lane_entered_at", "finished_at"
    ):
        marks += [(entered, 1), (finished, -1)]
    peak = level = 0
    for _, step in sorted(marks, key=lambda m: (m[0], m[1])):
        level += step
        peak = max(peak, level)
    return peak


def test_a_heavy_user_cannot_hold_back_light_users(make_api_user: Callable[[str], ApiUser]) -> None:
    set_plan_limits("pro", max_concurrent=2, max_pending=40)
    a, b, c = (make_api_user(name) for name in ("heavy_a", "light_b", "light_c"))
    a_ids = submit_many(a, 30)
    b_ids, c_ids = submit_many(b, 5), submit_many(c, 5)
    wait_all(a, a_ids)
    wait_all(b, b_ids)
    wait_all(c, c_ids)
    finished = {str(i): f for i, f in Generation.objects.values_list("id", "finished_at") if f is not None}
    a_fifteenth = sorted(finished[i] for i in a_ids)[14]
    assert max(finished[i] for i in b_ids + c_ids) < a_fifteenth
    for user in (a, b, c):
        assert max_in_flight(user.user.pk) <= 2


def test_a_free_job_runs_even_while_the_priority_lane_stays_full(
    make_api_user: Callable[[str], ApiUser], settings: object
) -> None:
    set_plan_limits("pro", max_concurrent=2, max_pending=40)
    set_plan_limits("free", api_rate_per_minute=1000)
    pro, free = make_api_user("pro_user"), make_api_user("free_user")
    account = account_for(free.user)
    BillingAccount.objects.filter(pk=account.pk).update(plan=Plan.objects.get(slug="free"))
    settings.ATELIER_LANE_AGE_LIMITS = {"free": 1.0, "standard": 1.0}  # type: ignore[attr-defined]
    # Sizes that cannot share a batch: the two pro jobs in flight run one after the other, so the
    # priority lane never empties for a moment (this test is about aging, not batching).
    pro_ids = [
        i for n in range(30) for i in submit_many(pro, 1, width=240 + 16 * (n % 2), height=256, steps=20)
    ]
    free_id = submit_many(free, 1)[0]
    assert Generation.objects.get(pk=free_id).lane == "free"

    with dispatcher_running(0.3):
        free.wait_until_done(free_id, timeout=120)
    row = Generation.objects.get(pk=free_id)
    assert row.status == "succeeded" and row.lane == "priority"
    pro_done = Generation.objects.filter(pk__in=pro_ids, finished_at__lt=row.finished_at).count()
    assert pro_done < 30, "the free job ran before the priority lane emptied"
    for generation_id in pro_ids:
        pro.post(f"/api/v1/generations/{generation_id}/cancel")

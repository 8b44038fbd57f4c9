"""Credits: quoted before, held at submission, captured per finished image, released otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from accounts.services import api_key_create
from billing.credits import account_for, effective_plan, generation_cost
from billing.models import BillingAccount, CreditEntry, EntryKind, Plan
from generations.models import Generation
from generations.queues import request_cancel
from gpu_worker.runner import GenerationRunner
from tests.factories import private_pool_model

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def free_by_default(settings: Any) -> None:
    settings.ATELIER_DEFAULT_PLAN = "free"


def api_client(user: User) -> Client:
    _, key = api_key_create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def submit(api: Client, **fields: Any) -> Any:
    body = {"prompt": "a kite", "width": 512, "height": 512, "steps": 20, **fields}
    return api.post("/api/v1/generations", body, content_type="application/json")


def entries(user: User, kind: str) -> list[int]:
    return list(CreditEntry.objects.filter(account__user=user, kind=kind).values_list("credits", flat=True))


@pytest.mark.parametrize(
    ("size", "steps", "n", "multiplier", "expected"),
    [
        (512, 20, 1, 1.0, 100),
        (1024, 20, 1, 1.0, 400),
        (512, 40, 4, 1.0, 800),
        (512, 20, 1, 2.5, 250),
        (64, 1, 1, 1.0, 1),
    ],
)
def test_the_cost_follows_size_steps_images_and_model(
    size: int, steps: int, n: int, multiplier: float, expected: int
) -> None:
    cost = generation_cost(width=size, height=size, steps=steps, n=n, multiplier=multiplier, relax=False)
    assert cost.total == expected
    assert (
        generation_cost(width=size, height=size, steps=steps, n=n, multiplier=multiplier, relax=True).total
        == 0
    )


def test_a_new_user_is_on_free_with_its_monthly_grant_once() -> None:
    user = User.objects.create_user("new")
    account = account_for(user)
    account_for(user)
    assert account.plan.slug == "free" and account.balance == 25_00
    assert entries(user, EntryKind.GRANT) == [25_00]


def test_free_gets_a_new_grant_in_a_new_month_and_unused_credits_expire() -> None:
    user = User.objects.create_user("monthly")
    account = account_for(user)
    CreditEntry.objects.filter(account=account, kind=EntryKind.GRANT).update(reference="monthly:2020-01")
    BillingAccount.objects.filter(pk=account.pk).update(balance=3_00, granted_month="2020-01")
    account = account_for(user)
    assert account.balance == 25_00
    assert entries(user, EntryKind.EXPIRE) == [3_00]


def test_the_quote_says_what_it_costs_and_creates_nothing(settings: Any) -> None:
    large = private_pool_model(settings, name="large", max_side=1024)  # the built-in stops at 512
    api = api_client(User.objects.create_user("q"))
    body = {"prompt": "a kite", "model": large.name, "width": 768, "height": 512, "steps": 30, "n": 2}
    quote = api.post("/api/v1/generations/quote", body, content_type="application/json").json()
    assert quote == {
        "object": "quote",
        "credits": "4.50",
        "credits_per_image": "2.25",
        "balance": "25.00",
        "sufficient": True,
        "lane": "free",
    }
    assert Generation.objects.count() == 0


def test_submitting_holds_the_credits() -> None:
    user = User.objects.create_user("h")
    response = submit(api_client(user), n=3)
    assert response.status_code == 202
    assert response.json()["credits"] == "3.00"
    account = BillingAccount.objects.get(user=user)
    assert (account.balance, account.held) == (22_00, 3_00)
    assert entries(user, EntryKind.HOLD) == [3_00]


def test_not_enough_credits_is_a_402_and_nothing_is_queued(settings: Any) -> None:
    large = private_pool_model(settings, name="large", max_side=1024)
    user = User.objects.create_user("poor")
    response = submit(api_client(user), model=large.name, width=768, height=768, steps=150, n=4)
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "insufficient_credits"
    assert error["details"] == {"required": "67.52", "available": "25.00"}
    assert Generation.objects.count() == 0
    assert BillingAccount.objects.get(user=user).balance == 25_00


def test_relax_mode_needs_a_plan_that_allows_it_and_costs_nothing() -> None:
    user = User.objects.create_user("r")
    api = api_client(user)
    refused = submit(api, mode="relax")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "relax_not_allowed"
    account = account_for(user)
    BillingAccount.objects.filter(pk=account.pk).update(plan=Plan.objects.get(slug="standard"))
    accepted = submit(api, mode="relax").json()
    assert (accepted["lane"], accepted["mode"], accepted["credits"]) == ("relax", "relax", "0.00")
    assert BillingAccount.objects.get(user=user).balance == 25_00


def test_a_model_outside_the_plans_pools_is_refused() -> None:
    Plan.objects.filter(slug="free").update(pools="sdxl")
    response = submit(api_client(User.objects.create_user("p")))
    assert response.status_code == 403 and response.json()["error"]["code"] == "model_not_in_plan"


def test_an_overdue_account_gets_free_limits() -> None:
    user = User.objects.create_user("late")
    account = account_for(user)
    account.plan = Plan.objects.get(slug="pro")
    account.subscription_status = "past_due"
    account.stripe_subscription_id = "sub_1"
    account.save()
    assert effective_plan(account).slug == "free"
    assert submit(api_client(user)).json()["lane"] == "free"


def test_a_scheduled_downgrade_applies_when_the_period_has_ended() -> None:
    user = User.objects.create_user("down")
    account = account_for(user)
    account.plan = Plan.objects.get(slug="pro")
    account.scheduled_plan = Plan.objects.get(slug="basic")
    account.current_period_end = timezone.now() + timedelta(days=3)
    account.save()
    assert account_for(user).plan.slug == "pro"
    BillingAccount.objects.filter(pk=account.pk).update(
        current_period_end=timezone.now() - timedelta(seconds=1)
    )
    assert account_for(user).plan.slug == "basic"


@pytest.fixture(scope="module")
def runner() -> Iterator[GenerationRunner]:
    instance = GenerationRunner(name="credit-runner")
    yield instance
    instance.publisher.close()


def submitted(user: User, **fields: Any) -> Generation:
    response = submit(api_client(user), width=64, height=64, steps=20, **fields)
    assert response.status_code == 202, response.content
    return Generation.objects.get(pk=response.json()["id"])


def test_finished_images_are_captured(runner: GenerationRunner) -> None:
    user = User.objects.create_user("ok")
    generation = submitted(user, n=2)
    assert runner.run_one(str(generation.id)) == "succeeded"
    assert entries(user, EntryKind.CAPTURE) == [generation.credits_held]
    assert entries(user, EntryKind.RELEASE) == []
    account = BillingAccount.objects.get(user=user)
    assert (account.balance, account.held) == (25_00 - generation.credits_held, 0)


def test_a_failed_generation_releases_everything(runner: GenerationRunner) -> None:
    user = User.objects.create_user("fails")
    generation = submitted(user)
    Generation.objects.filter(pk=generation.pk).update(model_name="gone")
    assert runner.run_one(str(generation.id)) == "failed"
    assert entries(user, EntryKind.RELEASE) == [generation.credits_held]
    assert BillingAccount.objects.get(user=user).balance == 25_00


def test_canceling_releases_whether_queued_or_running(runner: GenerationRunner) -> None:
    user = User.objects.create_user("stops")
    api = api_client(user)
    queued = submitted(user)
    assert api.post(f"/api/v1/generations/{queued.id}/cancel").status_code == 202
    running = submitted(user)
    request_cancel(running)
    assert runner.run_one(str(running.id)) == "canceled"
    assert sorted(entries(user, EntryKind.RELEASE)) == sorted([queued.credits_held, running.credits_held])
    account = BillingAccount.objects.get(user=user)
    assert (account.balance, account.held) == (25_00, 0)

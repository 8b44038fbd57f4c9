"""ComfyUI's ``front`` on POST /prompt in Atelier's shared queue: the prompt goes ahead of its
owner's own waiting prompts, never ahead of anyone else's (generations/ordering.py).

No worker runs: the order is read where a worker would take it from (the RQ list of the pool's
lane), from GET /queue and from each generation's queue position."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import User
from accounts.services import api_key_create
from generations import queues
from generations.models import Generation, GenerationStatus
from generations.positions import queue_position
from tests.comfy_support import txt2img
from tests.conftest import set_plan_limits

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_session_workers")]

MODEL = settings.ATELIER_DEFAULT_MODEL


@pytest.fixture(autouse=True)
def empty_queues() -> None:
    """Another test's jobs would stand in the queues (no worker runs to take them)."""
    client = queues.redis_client()
    keys = list(client.scan_iter("rq:queue:gen.*"))
    if keys:
        client.delete(*keys)


def client_for(username: str) -> Client:
    user = User.objects.create_user(username, password="x")
    _, key = api_key_create(user=user)
    client = Client()
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def queue_prompt(client: Client, seed: int, **fields: Any) -> dict[str, Any]:
    body = {"prompt": txt2img(MODEL, **{"3.seed": seed}), **fields}
    response = client.post("/prompt", body, content_type="application/json")
    assert response.status_code == 200, response.content
    answer: dict[str, Any] = response.json()
    return answer


def rq_order() -> list[str]:
    """The prompt ids in the order a worker takes them (the demo pool's lane of the plan)."""
    name = Generation.objects.first().queue_name  # type: ignore[union-attr]
    jobs = queues.redis_client().lrange(queues.queue_key(name), 0, -1)
    return [job.decode().split("-", 1)[1].rsplit("-", 1)[0] for job in jobs]


def pending_ids(client: Client) -> list[str]:
    return [item[1] for item in client.get("/queue").json()["queue_pending"]]


def position(prompt_id: str) -> int | None:
    return queue_position(Generation.objects.get(pk=prompt_id))


def test_front_runs_first_of_its_owners_prompts_and_never_before_an_earlier_user() -> None:
    # One of a user's prompts in RQ at a time, the rest held back (pending).
    set_plan_limits(settings.ATELIER_DEFAULT_PLAN, max_concurrent=1, max_pending=5)
    alice, bob = client_for("alice"), client_for("bob")
    bobs = queue_prompt(bob, 1)["prompt_id"]
    first, second = queue_prompt(alice, 2), queue_prompt(alice, 3)
    assert rq_order() == [bobs, first["prompt_id"]]
    third = queue_prompt(alice, 4, front=True)

    ids = [first["prompt_id"], second["prompt_id"], third["prompt_id"]]
    assert pending_ids(alice) == [ids[2], ids[0], ids[1]]  # GET /queue: the order they will run in
    assert third["number"] < first["number"] < second["number"]  # as ComfyUI's negative number sorts
    # The third took the first's place in RQ, behind bob's; the first waits again, first in line.
    assert rq_order() == [bobs, ids[2]]
    assert position(bobs) == 1 and position(ids[2]) == 2
    statuses = dict(Generation.objects.values_list("pk", "status"))
    assert {str(k): v for k, v in statuses.items()} == {
        bobs: GenerationStatus.QUEUED,
        ids[2]: GenerationStatus.QUEUED,
        ids[0]: GenerationStatus.PENDING,
        ids[1]: GenerationStatus.PENDING,
    }
    assert pending_ids(bob) == [bobs]  # and bob sees only his own
    # When the third leaves the queue, the first is released before the second.
    alice.post("/queue", {"delete": [ids[2]]}, content_type="application/json")
    assert rq_order() == [bobs, ids[0]]
    assert pending_ids(alice) == [ids[0], ids[1]]


def test_front_moves_only_its_owners_places_among_other_users_prompts() -> None:
    set_plan_limits(settings.ATELIER_DEFAULT_PLAN, max_concurrent=5, max_pending=5)  # all in RQ
    alice, bob = client_for("alice"), client_for("bob")
    a1 = queue_prompt(alice, 1)["prompt_id"]
    b1 = queue_prompt(bob, 2)["prompt_id"]
    a2 = queue_prompt(alice, 3)["prompt_id"]
    b2 = queue_prompt(bob, 4)["prompt_id"]
    before = {b1: position(b1), b2: position(b2)}
    a3 = queue_prompt(alice, 5, front=True)["prompt_id"]

    # Alice's places (1st, 3rd and now 5th) are handed round; bob's two keep theirs.
    assert rq_order() == [a3, b1, a1, b2, a2]
    assert {b1: position(b1), b2: position(b2)} == before
    assert [position(a3), position(a1), position(a2)] == [1, 3, 5]
    assert pending_ids(alice) == [a3, a1, a2]
    assert pending_ids(bob) == [b1, b2]
    # A second front goes ahead of the first one.
    a4 = queue_prompt(alice, 6, front=True)["prompt_id"]
    assert rq_order() == [a4, b1, a3, b2, a1, a2]
    assert pending_ids(alice) == [a4, a3, a1, a2]


def test_front_without_other_prompts_just_queues_and_false_is_the_default() -> None:
    alice = client_for("alice")
    only = queue_prompt(alice, 1, front=True)
    later = queue_prompt(alice, 2, front=False)
    assert rq_order() == [only["prompt_id"], later["prompt_id"]]
    assert pending_ids(alice) == [only["prompt_id"], later["prompt_id"]]

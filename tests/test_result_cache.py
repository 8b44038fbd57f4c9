"""Who may be answered from whose results, and what makes two requests identical (in-process; the
live test tests/test_result_cache_live.py runs the real thing)."""

from __future__ import annotations

from typing import Any

import pytest

from billing.credits import account_for
from generations.models import Generation, GenerationStatus, Image
from tests.api_support import Api

pytestmark = pytest.mark.django_db

SEEDED = {"prompt": "a boat", "width": 64, "height": 64, "steps": 2, "seed": 99}


def finished(api: Api, body: dict[str, Any], *, public: bool = False) -> Generation:
    """Submit, then finish it as a worker would have (the tests run none)."""
    response = api.post("/api/v1/generations", body)
    assert response.status_code == 202, response.content
    generation = Generation.objects.get(pk=response.json()["id"])
    Generation.objects.filter(pk=generation.pk).update(status=GenerationStatus.SUCCEEDED, is_public=public)
    generation.refresh_from_db()
    Image.objects.create(
        generation=generation,
        index=0,
        seed=generation.seed,
        width=64,
        height=64,
        original="images/ab/ab.png",
        thumbnail="images/ab/ab.webp",
        sha256="ab",
    )
    return generation


def test_an_identical_request_is_answered_from_the_users_own_result(owner: Api) -> None:
    source = finished(owner, SEEDED)
    response = owner.post("/api/v1/generations", SEEDED)
    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["cached"], body["credits"]) == ("succeeded", True, "0.00")
    copy = Image.objects.get(generation_id=body["id"])
    assert (copy.original, copy.thumbnail) == (source.images.get().original, source.images.get().thumbnail)


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 100},
        {"prompt": "a ship"},
        {"steps": 3},
        {"guidance": 1.5},
        {"width": 128},
        {"negative_prompt": "x"},
    ],
)
def test_a_request_that_differs_in_anything_renders(owner: Api, change: dict[str, Any]) -> None:
    finished(owner, SEEDED)
    response = owner.post("/api/v1/generations", {**SEEDED, **change})
    assert (response.status_code, response.json()["cached"]) == (202, False)


def test_another_users_private_result_is_never_served(owner: Api, other: Api) -> None:
    finished(owner, SEEDED)
    response = other.post("/api/v1/generations", SEEDED)
    assert (response.status_code, response.json()["status"]) == (202, "queued")


def test_a_public_result_serves_everyone(owner: Api, other: Api) -> None:
    finished(owner, SEEDED, public=True)
    response = other.post("/api/v1/generations", SEEDED)
    assert (response.status_code, response.json()["cached"]) == (201, True)


def test_a_configured_fraction_of_the_price_is_charged(owner: Api, settings: Any) -> None:
    settings.ATELIER_RESULT_CACHE_CHARGE = 0.5
    source = finished(owner, SEEDED)
    balance = account_for(owner.user).balance  # type: ignore[arg-type]
    body = owner.post("/api/v1/generations", SEEDED).json()
    half = (source.credits_per_image + 1) // 2
    assert body["credits"] == f"{half / 100:.2f}"
    assert account_for(owner.user).balance == balance - half  # type: ignore[arg-type]


def test_the_cache_can_be_turned_off(owner: Api, settings: Any) -> None:
    settings.ATELIER_RESULT_CACHE = False
    finished(owner, SEEDED)
    assert owner.post("/api/v1/generations", SEEDED).status_code == 202

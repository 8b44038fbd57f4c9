"""The whole path with real processes: API -> RQ -> gpu_worker -> storage -> WebSocket events."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from tests.conftest import ApiUser

pytestmark = pytest.mark.live

SMALL = {"width": 128, "height": 128, "steps": 6}


def submit(user: ApiUser, **fields: object) -> dict:
    response = user.post("/api/v1/generations", json={"prompt": "a red fox in snow", **SMALL, **fields})
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/api/v1/generations/{response.json()['id']}"
    return dict(response.json())


def test_it_renders_a_prompt_and_streams_events_in_order(alice: ApiUser) -> None:
    with alice.events() as events:
        assert events.next()["type"] == "snapshot"
        generation = submit(alice, n=2, seed=1234, steps=8)
        assert generation["status"] == "queued"
        assert generation["queue_position"] >= 1
        seen = events.until(generation["id"], {"generation.succeeded", "generation.failed"})
    types = [e["type"] for e in seen]
    assert types[0] == "generation.queued"
    assert types[1] == "generation.started"
    assert types[-1] == "generation.succeeded"
    progress = [e for e in seen if e["type"] == "generation.progress"]
    assert len(progress) >= 2
    steps = [e["step"] for e in progress]
    assert steps == sorted(steps) and steps[-1] == 8
    assert all(e["preview"].startswith("data:image/jpeg;base64,") for e in progress)
    images = seen[-1]["images"]
    assert [i["seed"] for i in images] == [1234, 1235]

    png = alice.get(images[0]["url"])
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    picture = Image.open(io.BytesIO(png.content))
    assert picture.size == (128, 128)
    embedded = json.loads(picture.text["parameters"])  # type: ignore[attr-defined]
    assert embedded["prompt"] == "a red fox in snow" and embedded["seed"] == 1234
    thumb = alice.get(images[0]["thumbnail_url"])
    assert thumb.headers["Content-Type"] == "image/webp"
    assert Image.open(io.BytesIO(thumb.content)).format == "WEBP"

    done = alice.get(f"/api/v1/generations/{generation['id']}").json()
    assert done["status"] == "succeeded" and done["progress"] == 1.0 and len(done["images"]) == 2


def test_it_renders_img2img_from_an_upload(alice: ApiUser) -> None:
    source = io.BytesIO()
    Image.new("RGB", (200, 150), (200, 30, 30)).save(source, format="JPEG")
    upload = alice.post("/api/v1/uploads", files={"file": ("red.jpg", source.getvalue(), "image/jpeg")})
    assert upload.status_code == 201, upload.text
    assert (upload.json()["width"], upload.json()["height"]) == (200, 150)
    generation = submit(alice, input_image=upload.json()["id"], strength=0.5, steps=10)
    assert generation["kind"] == "img2img"
    done = alice.wait_until_done(generation["id"])
    assert done["status"] == "succeeded", done
    assert done["total_steps"] == 5  # strength 0.5 of 10 steps
    picture = Image.open(io.BytesIO(alice.get(done["images"][0]["url"]).content))
    assert picture.size == (128, 128)


def test_it_cancels_a_running_generation_within_a_step(alice: ApiUser) -> None:
    with alice.events() as events:
        events.next()
        generation = submit(alice, width=512, height=512, steps=150)
        events.until(generation["id"], {"generation.progress"})
        response = alice.post(f"/api/v1/generations/{generation['id']}/cancel")
        assert response.status_code == 202
        seen = events.until(generation["id"], {"generation.canceled", "generation.succeeded"}, timeout=30)
    assert seen[-1]["type"] == "generation.canceled"
    done = alice.get(f"/api/v1/generations/{generation['id']}").json()
    assert done["status"] == "canceled" and done["images"] == []
    assert done["step"] < 150
    again = alice.post(f"/api/v1/generations/{generation['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "generation_finished"


def test_it_cancels_a_queued_generation_before_it_runs(alice: ApiUser) -> None:
    blocker = submit(alice, width=512, height=512, steps=40)
    waiting = submit(alice)
    response = alice.post(f"/api/v1/generations/{waiting['id']}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "canceled"
    alice.post(f"/api/v1/generations/{blocker['id']}/cancel")
    assert alice.wait_until_done(blocker["id"])["status"] == "canceled"
    assert alice.get(f"/api/v1/generations/{waiting['id']}").json()["started_at"] is None


def test_a_client_connecting_mid_job_gets_a_snapshot_first(alice: ApiUser) -> None:
    generation = submit(alice, width=512, height=512, steps=60)
    with alice.events() as events:
        snapshot = events.next()
        assert snapshot["type"] == "snapshot"
        assert [g["id"] for g in snapshot["generations"]] == [generation["id"]]
        assert snapshot["generations"][0]["status"] in ("queued", "running")
        alice.post(f"/api/v1/generations/{generation['id']}/cancel")
        events.until(generation["id"], {"generation.canceled"})


def test_it_lists_only_your_own_generations_with_a_cursor(alice: ApiUser, bob: ApiUser) -> None:
    mine = [submit(alice, steps=1)["id"] for _ in range(3)]
    submit(bob, steps=1)
    first = alice.get("/api/v1/generations", params={"limit": 2}).json()
    assert [g["id"] for g in first["data"]] == mine[::-1][:2]
    second = alice.get(first["next"]).json()
    assert [g["id"] for g in second["data"]] == mine[:1]
    assert second["next"] is None
    for generation_id in mine:
        alice.wait_until_done(generation_id)


def test_other_users_objects_are_404_over_http_and_websocket(alice: ApiUser, bob: ApiUser) -> None:
    generation = submit(alice, steps=2)
    done = alice.wait_until_done(generation["id"])
    image = done["images"][0]
    for path in (f"/api/v1/generations/{generation['id']}", image["url"], image["thumbnail_url"]):
        response = bob.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    cancel = bob.post(f"/api/v1/generations/{generation['id']}/cancel")
    assert cancel.status_code == 404
    with bob.events() as events:
        assert events.next()["generations"] == []
        for kind in ("generation.get", "generation.cancel"):
            events.ws.send(json.dumps({"type": kind, "id": generation["id"]}))
            reply = events.next()
            assert reply["type"] == "error" and reply["error"]["code"] == "not_found"
    with alice.events() as events:
        events.next()
        events.ws.send(json.dumps({"type": "generation.get", "id": generation["id"]}))
        assert events.next()["generation"]["status"] == "succeeded"


def test_bobs_socket_gets_nothing_of_alices_job_while_it_runs(alice: ApiUser, bob: ApiUser) -> None:
    with bob.events() as bobs, alice.events() as alices:
        assert bobs.next()["generations"] == [] and alices.next()["type"] == "snapshot"
        hers = submit(alice, steps=8)
        seen = alices.until(hers["id"], {"generation.succeeded", "generation.failed"})
        assert {"generation.started", "generation.progress"} <= {e["type"] for e in seen}
        # Bob's own job is the marker: events reach his socket in order, so anything of Alice's
        # sent to it would have arrived before his.
        his = submit(bob, steps=1)
        received = [bobs.next()]
        while received[-1].get("type") not in ("generation.succeeded", "generation.failed"):
            received.append(bobs.next())
    assert {event.get("id") for event in received} == {his["id"]}, received
    assert hers["id"] not in json.dumps(received)

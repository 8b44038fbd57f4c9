"""The publisher under lag (generations/publisher.py): previews go first, then all but the latest
progress of a generation, and never a change of status. The channel layer here is held shut by the
test and the publisher's clock is the test's, so "lag" is exactly what each test says it is."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from generations.publisher import EventPublisher, thinned_counts

USER = 7
GENERATION = "0b8e4a52-5b8e-4a52-9b8e-4a525b8e4a52"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class HeldLayer:
    """A channel layer whose sends wait until the test opens it, each then taking ``seconds`` of
    the publisher's clock (a slow channel layer); records what it was sent."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds
        self.open = threading.Event()
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.sending = threading.Event()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sending.set()
        while not self.open.is_set():
            await asyncio.sleep(0.005)
        self.clock.now += self.seconds
        self.sent.append((group, message))

    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for _, message in self.sent:
            events += message.get("events", [message["event"]] if "event" in message else [])
        return events


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def layer(clock: Clock) -> HeldLayer:
    return HeldLayer(clock, seconds=0.6)  # each send over the preview lag, under the progress lag


@pytest.fixture
def publisher(layer: HeldLayer, clock: Clock) -> Iterator[EventPublisher]:
    publisher = EventPublisher(layer=layer, clock=clock, preview_lag=0.5, progress_lag=2.0)
    yield publisher
    layer.open.set()
    publisher.close()


def event(kind: str, step: int = 0, preview: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": f"generation.{kind}", "id": GENERATION, "step": step, "steps": 10}
    if preview is not None:
        body["preview"] = preview
    return body


def start_held_send(publisher: EventPublisher, layer: HeldLayer) -> None:
    """The started event leaves first and its send hangs in the channel layer (t = 0)."""
    publisher.publish(USER, event("started"))
    assert layer.sending.wait(10)


def deliver(publisher: EventPublisher, layer: HeldLayer) -> list[dict[str, Any]]:
    layer.open.set()
    publisher.flush()
    return layer.events()


def test_it_sends_everything_with_previews_when_nothing_lags(
    publisher: EventPublisher, layer: HeldLayer, clock: Clock
) -> None:
    layer.seconds = 0.0
    layer.open.set()
    publisher.publish(USER, event("started"))
    for step in range(1, 4):
        publisher.publish(USER, event("progress", step, preview=f"jpeg{step}"))
    publisher.publish(USER, event("succeeded", 10))
    publisher.flush()
    events = layer.events()
    assert [e["type"] for e in events] == [
        "generation.started",
        *["generation.progress"] * 3,
        "generation.succeeded",
    ]
    assert [e.get("preview") for e in events[1:4]] == ["jpeg1", "jpeg2", "jpeg3"]
    assert layer.sent[0][0] == f"user.{USER}"


def test_it_drops_previews_first_and_keeps_every_progress_under_a_small_lag(
    publisher: EventPublisher, layer: HeldLayer, clock: Clock
) -> None:
    start_held_send(publisher, layer)
    clock.now = 1.0  # the channel layer has held a send for a second: over the preview lag only
    for step in range(1, 4):
        publisher.publish(USER, event("progress", step, preview=f"jpeg{step}"))
    publisher.publish(USER, event("succeeded", 10))
    events = deliver(publisher, layer)
    assert [(e["type"], e["step"]) for e in events] == [
        ("generation.started", 0),
        ("generation.progress", 1),
        ("generation.progress", 2),
        ("generation.progress", 3),
        ("generation.succeeded", 10),
    ]
    assert not any("preview" in e for e in events)


def test_past_the_progress_lag_only_the_latest_progress_is_kept_and_no_status_is_lost(
    publisher: EventPublisher, layer: HeldLayer, clock: Clock
) -> None:
    before = thinned_counts()
    start_held_send(publisher, layer)
    for step in range(1, 4):  # while the lag is small, each progress waits to be sent
        publisher.publish(USER, event("progress", step, preview=f"jpeg{step}"))
    clock.now = 3.0  # now the path is three seconds behind
    publisher.publish(USER, event("progress", 8, preview="jpeg8"))
    publisher.publish(USER, event("progress", 9, preview="jpeg9"))
    publisher.publish(USER, event("canceled", 9))
    other = "ffffffff-5b8e-4a52-9b8e-4a525b8e4a52"
    publisher.publish(USER, {**event("queued"), "id": other})
    publisher.publish(USER, {**event("failed"), "id": other, "error": {"code": "timeout"}})
    events = deliver(publisher, layer)
    assert [(e["type"], e["step"]) for e in events] == [
        ("generation.started", 0),
        ("generation.progress", 9),
        ("generation.canceled", 9),
        ("generation.queued", 0),
        ("generation.failed", 0),
    ]
    assert "preview" not in events[1]
    publisher.close()  # adds this publisher's counts to the shared ones
    after = thinned_counts()
    assert after["progress"] - before["progress"] == 4
    assert after["preview"] - before["preview"] == 1


def test_workflow_progress_is_coalesced_and_preview_frames_are_dropped(
    publisher: EventPublisher, layer: HeldLayer, clock: Clock
) -> None:
    start_held_send(publisher, layer)
    clock.now = 3.0
    for value in (1, 2, 3):
        message = {"type": "workflow.message", "kind": "progress", "data": {"value": value}}
        publisher.send_to_group("workflow.7", message, key="prompt-1:progress")
        frame = {"type": "workflow.message", "bytes": b"jpeg"}
        publisher.send_to_group("workflow.7", frame, preview_frame=True)
    done = {"type": "workflow.message", "kind": "executing", "data": {"node": None}}
    publisher.send_to_group("workflow.7", done)
    deliver(publisher, layer)
    workflow = [message for group, message in layer.sent if group == "workflow.7"]
    assert workflow == [
        {"type": "workflow.message", "kind": "progress", "data": {"value": 3}},
        done,
    ]


def test_a_hung_channel_layer_is_reported_as_lag(
    publisher: EventPublisher, layer: HeldLayer, clock: Clock
) -> None:
    start_held_send(publisher, layer)
    clock.now = 4.0
    assert publisher.lag() == 4.0
    assert deliver(publisher, layer)[0]["type"] == "generation.started"
    assert publisher.lag() == pytest.approx(4.6)  # the last send's duration, until the next one


def test_events_waiting_for_one_group_leave_in_one_message_in_order(
    publisher: EventPublisher, layer: HeldLayer, clock: Clock
) -> None:
    layer.seconds = 0.0
    start_held_send(publisher, layer)
    for step in (1, 2):
        publisher.publish(USER, event("progress", step))
    publisher.publish(USER + 1, event("queued"))  # another user's: a message of its own
    publisher.publish(USER, event("succeeded", 10))
    deliver(publisher, layer)
    kinds = [
        (group, [e["type"][11:] for e in message.get("events", [message.get("event", {})])])
        for group, message in layer.sent
    ]
    assert kinds == [
        (f"user.{USER}", ["started"]),
        (f"user.{USER}", ["progress", "progress"]),
        (f"user.{USER + 1}", ["queued"]),
        (f"user.{USER}", ["succeeded"]),
    ]

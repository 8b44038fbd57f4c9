"""Webhook deliveries cannot hold up the dispatcher: a total deadline per delivery, a bounded pool
apart from the dispatcher's loop, and back-off per endpoint. Real receivers on loopback."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from accounts.services import api_key_create
from generations.dispatcher import TickResult, tick
from generations.events import record_webhooks
from generations.models import Generation
from tests.factories import queued_generation
from tests.webhook_support import Receiver
from webhooks.models import WebhookAttempt, WebhookDelivery

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_targets_allowed")]


class Dripper:
    """A receiver that answers a status line, then one header line every ``interval`` seconds for
    ``lasts`` seconds: each read is quick, the whole answer is not."""

    def __init__(self, interval: float = 0.5, lasts: float = 12.0) -> None:
        self.interval, self.lasts = interval, lasts
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hooks"
        self.open = 0
        self.most_open = 0
        self.accepted = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.drip, args=(connection,), daemon=True).start()

    def drip(self, connection: socket.socket) -> None:
        with self.lock:
            self.accepted += 1
            self.open += 1
            self.most_open = max(self.most_open, self.open)
        try:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\n")
            started = time.monotonic()
            line = 0
            while time.monotonic() - started < self.lasts:
                if select.select([connection], [], [], self.interval)[0] and not connection.recv(1):
                    return  # the sender hung up: what a deadline does
                line += 1
                connection.sendall(f"X-Drip-{line}: still here\r\n".encode())
            connection.sendall(b"Content-Length: 0\r\n\r\n")
        except OSError:
            pass  # the sender hung up: what a deadline does
        finally:
            connection.close()
            with self.lock:
                self.open -= 1

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def dripper() -> Iterator[Dripper]:
    instance = Dripper()
    yield instance
    instance.close()


def registered(name: str, url: str) -> User:
    user = User.objects.create_user(name)
    _, key = api_key_create(user=user)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.post("/api/v1/webhooks", {"url": url}, content_type="application/json").status_code == 201
    return user


def event(generation: str) -> dict[str, Any]:
    return {"type": "generation.succeeded", "id": generation, "at": timezone.now().isoformat()}


def lost_job(user: User) -> Generation:
    long_ago = timezone.now() - timedelta(minutes=5)
    return queued_generation(user, status="running", worker_name="ghost-worker", started_at=long_ago)


def tick_until(done: Callable[[], bool], seconds: float) -> float:
    """Tick like the dispatcher does until ``done``; the seconds that took."""
    started = time.monotonic()
    while not done():
        attempts = list(WebhookAttempt.objects.values_list("delivery__endpoint__user__username", "error"))
        assert time.monotonic() - started < seconds, f"not done in time; attempts: {attempts}"
        tick()
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_dripping_receiver_is_cut_at_the_deadline_and_the_dispatcher_goes_on(
    dripper: Dripper, receiver: Receiver, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.ATELIER_WEBHOOK_DEADLINE = 1.5
    mallory = registered("mallory", dripper.url)
    bob = registered("bob", receiver.url)
    lost = lost_job(bob)
    record_webhooks(mallory.pk, event("m-1"))
    record_webhooks(bob.pk, event("b-1"))

    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        result: TickResult = tick()
    took = time.monotonic() - started
    assert took < 1.4, f"one tick took {took:.1f} s"  # under the deadline: the dripper is not waited for
    assert result.requeued == 1  # lost-job recovery ran in the same tick
    assert Generation.objects.get(pk=lost.pk).status == "queued"
    tick_until(lambda: len(receiver.received) == 1, 8.0)  # bob's webhook went out meanwhile

    slow = WebhookDelivery.objects.get(endpoint__user=mallory)
    tick_until(lambda: slow.attempt_log.exists(), 3.0)
    attempt = slow.attempt_log.get()
    assert attempt.status_code is None and "deadline" in attempt.error
    # cut at 1.5 s, although no single read waited more than half a second
    assert 1400 <= attempt.duration_ms < 2500, attempt.duration_ms
    assert time.monotonic() - started < 10  # the dripper would have gone on for 12 s


def test_an_endpoint_that_failed_waits_while_other_endpoints_go_on(
    dripper: Dripper, receiver: Receiver, settings: Any
) -> None:
    settings.ATELIER_WEBHOOK_DEADLINE = 0.5
    mallory = registered("mallory", dripper.url)
    bob = registered("bob", receiver.url)
    record_webhooks(mallory.pk, event("m-1"))
    record_webhooks(mallory.pk, event("m-2"))
    tick_until(lambda: WebhookDelivery.objects.filter(attempts=1).exists(), 3.0)
    # the second delivery is due, but its endpoint just failed: it waits for the endpoint's back-off
    record_webhooks(bob.pk, event("b-1"))
    tick_until(lambda: len(receiver.received) == 1, 5.0)
    for _ in range(5):
        tick()
        time.sleep(0.05)
    assert dripper.accepted == 1
    pending = WebhookDelivery.objects.filter(endpoint__user=mallory, attempts=0)
    assert pending.count() == 1


def test_deliveries_run_at_most_the_configured_number_at_once(dripper: Dripper, settings: Any) -> None:
    settings.ATELIER_WEBHOOK_DEADLINE = 1.0
    settings.ATELIER_WEBHOOK_CONCURRENCY = 2
    for name in ("ann", "ben", "cat", "dan"):
        record_webhooks(registered(name, dripper.url).pk, event(name))
    started = time.monotonic()
    tick_until(lambda: WebhookDelivery.objects.filter(attempts=1).count() == 4, 6.0)
    assert dripper.most_open == 2
    assert time.monotonic() - started >= 1.9  # two rounds of two, each cut at one second

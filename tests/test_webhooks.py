"""Outbound webhooks: Standard Webhooks signatures, retries until a flaky receiver answers, SSRF."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import standardwebhooks
from django.test import Client
from django.utils import timezone

from accounts.models import User
from accounts.services import api_key_create
from generations.events import record_webhooks
from tests.webhook_support import Receiver
from webhooks import sender
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_targets_allowed")]


def api_for(name: str) -> tuple[User, Client]:
    user = User.objects.create_user(name)
    _, key = api_key_create(user=user)
    return user, Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def register(api: Client, url: str, **fields: Any) -> Any:
    return api.post("/api/v1/webhooks", {"url": url, **fields}, content_type="application/json")


def event(kind: str = "generation.succeeded", generation: str = "g-1") -> dict[str, Any]:
    return {"type": kind, "id": generation, "status": "succeeded", "at": timezone.now().isoformat()}


def deliver_all() -> None:
    """Every pending delivery attempted once, as if its and its endpoint's back-off had passed."""
    WebhookDelivery.objects.filter(status="pending").update(next_attempt_at=timezone.now())
    WebhookEndpoint.objects.update(retry_after=None)
    sender.deliver_due()
    assert sender.sender().wait_idle(10)
    sender.record_finished()


def test_deliveries_are_signed_by_the_standard_webhooks_scheme(receiver: Receiver) -> None:
    user, api = api_for("hooked")
    created = register(api, receiver.url).json()
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert "secret" not in api.get(f"/api/v1/webhooks/{created['id']}").json()
    record_webhooks(user.pk, event())
    deliver_all()
    headers, body = receiver.received[0]
    verified = standardwebhooks.Webhook(secret).verify(body, headers)  # an independent implementation
    assert verified["type"] == "generation.succeeded" and verified["id"] == "g-1"
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body.replace(b"g-1", b"g-2"), headers)


def test_a_flaky_receiver_gets_the_same_message_until_it_answers(receiver: Receiver) -> None:
    receiver.fail_first = 2
    user, api = api_for("flaky")
    endpoint = register(api, receiver.url).json()
    record_webhooks(user.pk, event())
    for _ in range(3):
        deliver_all()
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert len(receiver.received) == 3 and len(ids) == 1
    log = api.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries").json()["data"][0]
    assert log["status"] == "succeeded"
    assert [a["status_code"] for a in log["attempts"]] == [500, 500, 200]


def test_a_failing_delivery_backs_off_and_gives_up_after_a_day(receiver: Receiver) -> None:
    receiver.fail_first = 1000
    user, api = api_for("down")
    register(api, receiver.url)
    record_webhooks(user.pk, event())
    deliver_all()
    delivery = WebhookDelivery.objects.get()
    waits = []
    while delivery.status == "pending":
        waits.append((delivery.next_attempt_at - timezone.now()).total_seconds())
        deliver_all()
        delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert waits == sorted(waits) and sum(sender.BACKOFF) >= 24 * 3600
    assert delivery.attempts == len(sender.BACKOFF) + 1


def test_a_receiver_that_times_out_counts_as_a_failure(receiver: Receiver, settings: Any) -> None:
    settings.ATELIER_WEBHOOK_DEADLINE = 0.2
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        user, api = api_for("slow")
        register(api, f"http://127.0.0.1:{silent.getsockname()[1]}/hooks")
        record_webhooks(user.pk, event())
        deliver_all()
        delivery = WebhookDelivery.objects.get()
        attempt = delivery.attempt_log.get()
        assert delivery.status == "pending" and "deadline" in attempt.error
    finally:
        silent.close()


def test_event_filters_disabled_endpoints_and_progress_rate(receiver: Receiver) -> None:
    user, api = api_for("picky")
    only_done = register(api, receiver.url, events=["generation.succeeded"]).json()
    disabled = register(api, receiver.url).json()
    api.patch(f"/api/v1/webhooks/{disabled['id']}", {"enabled": False}, content_type="application/json")
    everything = register(api, receiver.url).json()
    record_webhooks(user.pk, event("generation.started"))
    for _ in range(10):
        record_webhooks(user.pk, event("generation.progress"))
    record_webhooks(user.pk, event())
    by_endpoint = {
        key: list(WebhookDelivery.objects.filter(endpoint_id=key).values_list("event_type", flat=True))
        for key in (only_done["id"], disabled["id"], everything["id"])
    }
    assert by_endpoint[only_done["id"]] == ["generation.succeeded"]
    assert by_endpoint[disabled["id"]] == []
    assert sorted(by_endpoint[everything["id"]]) == [
        "generation.progress",
        "generation.started",
        "generation.succeeded",
    ]


def test_the_test_button_sends_a_test_event_and_others_get_404(receiver: Receiver) -> None:
    _, api = api_for("tester")
    endpoint = register(api, receiver.url).json()
    assert api.post(f"/api/v1/webhooks/{endpoint['id']}/test").status_code == 202
    deliver_all()
    assert json.loads(receiver.received[0][1])["type"] == "webhook.test"
    _, stranger = api_for("stranger")
    for path in ("", "/test", "/deliveries"):
        method = stranger.post if path == "/test" else stranger.get
        assert method(f"/api/v1/webhooks/{endpoint['id']}{path}").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hooks",
        "https://127.0.0.1/hooks",
        "https://10.1.2.3/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hooks",
        "https://internal.example/hooks",
    ],
)
def test_in_production_private_targets_are_refused(
    url: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ATELIER_WEBHOOK_ALLOW_PRIVATE = False
    real = socket.getaddrinfo

    def resolve(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "internal.example":  # a public-looking name that points inside
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    _, api = api_for("prod")
    response = register(api, url)
    assert response.status_code == 400 and "url" in response.json()["error"]["details"]


def test_in_production_a_public_https_target_is_accepted(settings: Any) -> None:
    settings.ATELIER_WEBHOOK_ALLOW_PRIVATE = False
    _, api = api_for("public")
    assert register(api, "https://93.184.216.34/hooks").status_code == 201


def test_a_generation_can_name_its_own_webhook(
    receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    user, api = api_for("per_generation")
    body = {
        "prompt": "a kite",
        "width": 64,
        "height": 64,
        "steps": 2,
        "webhook_url": receiver.url,
        "webhook_events": ["generation.succeeded"],
    }
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post("/api/v1/generations", body, content_type="application/json").json()
        second = api.post("/api/v1/generations", body, content_type="application/json").json()
    secret = first["webhook"]["secret"]
    assert "secret" not in second["webhook"] and second["webhook"]["id"] == first["webhook"]["id"]
    assert WebhookDelivery.objects.count() == 0  # only generation.succeeded was asked for
    record_webhooks(user.pk, event("generation.succeeded", first["id"]))
    record_webhooks(user.pk, event("generation.succeeded", "00000000-0000-0000-0000-000000000000"))
    deliver_all()
    assert len(receiver.received) == 1
    headers, payload = receiver.received[0]
    assert standardwebhooks.Webhook(secret).verify(payload, headers)["id"] == first["id"]
    listed = api.get("/api/v1/webhooks").json()["data"]
    assert [e["url"] for e in listed] == [receiver.url]


def test_the_account_page_registers_tests_and_logs_deliveries(receiver: Receiver) -> None:
    user = User.objects.create_user("pager")
    browser = Client()
    browser.force_login(user)
    page = browser.post("/accounts/webhooks/", {"url": receiver.url, "events": ["generation.failed"]})
    html = page.content.decode()
    assert 'id="new-secret">whsec_' in html
    endpoint_id = WebhookEndpoint.objects.get(user=user).pk
    browser.post(f"/accounts/webhooks/{endpoint_id}/test/")
    deliver_all()
    html = browser.get("/accounts/webhooks/").content.decode()
    assert "webhook.test" in html and "succeeded" in html and "new-secret" not in html
    stranger = Client()
    stranger.force_login(User.objects.create_user("intruder"))
    assert stranger.post(f"/accounts/webhooks/{endpoint_id}/test/").status_code == 404

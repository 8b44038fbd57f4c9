"""Schemathesis fuzzing every operation of the OpenAPI schema, 200 examples each, in-process.

The requests go to the WSGI application in this process (no socket, no web process), as a member
on the Pro plan with credits to spend, so the generated bodies reach the code past authentication,
payment and the in-flight caps. Each example runs in a transaction that is rolled back afterwards:
what one example made, spent or deleted does not change what the next one finds. Half the time a
path's id is swapped for one of the member's (or a stranger's) real objects, so the operations are
exercised on things that exist, not only on unknown ids. A 5xx anywhere fails the test, and so
does an answer that does not match the schema.

No worker runs here, so `Prefer: wait=N` is capped at 0 s (waiting is tested with real processes
in tests/test_api.py); the socket and daphne's own HTTP layer are fuzzed, briefly, in
tests/test_api_schema_live.py.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from accounts.models import User
from accounts.services import api_key_create
from billing.credits import account_for, plan_by_slug
from billing.models import BillingAccount, Plan
from config.wsgi import application
from tests.factories import queued_generation
from tests.gallery_support import make_image
from webhooks.models import WebhookEndpoint

EXAMPLES_PER_OPERATION = 200


@dataclass
class Member:
    headers: dict[str, str]
    ids: dict[str, list[str]]


@pytest.fixture
def in_process_requests(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Django closes a connection that is not in autocommit at each request's start and end; here
    every request runs inside the test's transaction, as Django's own test client arranges."""
    monkeypatch.setattr("generations.waiting.MAX_WAIT_SECONDS", 0)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def member(db: None, in_process_requests: None) -> Member:
    alice = User.objects.create_user("fuzz_alice", password="x")
    bob = User.objects.create_user("fuzz_bob", password="x")
    Plan.objects.filter(pk=plan_by_slug("pro").pk).update(api_rate_per_minute=1_000_000)
    BillingAccount.objects.filter(pk=account_for(alice).pk).update(plan=plan_by_slug("pro"), balance=10**9)
    _, key = api_key_create(user=alice, name="fuzz")
    images = [make_image(alice), make_image(alice, public=False), make_image(bob)]
    endpoint = WebhookEndpoint.objects.create(user=alice, url="https://example.com/hook", secret="s")
    foreign = WebhookEndpoint.objects.create(user=bob, url="https://example.com/hook", secret="s")
    ids = {
        "image_id": [str(image.id) for image in images],
        "generation_id": [str(queued_generation(alice).id), str(images[0].generation_id)],
        "endpoint_id": [str(endpoint.id), str(foreign.id)],
        "username": [alice.username, bob.username],
    }
    return Member(headers={"Authorization": f"Bearer {key}"}, ids=ids)


# Loaded when the module is collected, so that each operation is a test of its own.
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_no_operation_answers_a_5xx_or_off_its_schema(case: Any, member: Member) -> None:
    for name, real in member.ids.items():
        if case.path_parameters and name in case.path_parameters:
            case.path_parameters[name] = existing_or_generated(case.path_parameters[name], real)
    with transaction.atomic():
        response = case.call(headers=member.headers)
        transaction.set_rollback(True)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])


def existing_or_generated(generated: Any, real: list[str]) -> Any:
    """One of ``real`` for half the generated values (chosen by the value itself, so a failing
    example shrinks and replays the same), else the generated value."""
    pick = zlib.crc32(str(generated).encode()) % (2 * len(real))
    return real[pick] if pick < len(real) else generated

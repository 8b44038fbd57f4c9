"""Circuit breakers per model (generations/circuits.py), through the API, without a worker: what
the workers would report is reported directly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.test import Client

from billing.credits import account_for
from billing.models import BillingAccount, CreditEntry
from core.model_catalog import ModelSpec, parse_models
from generations import circuits
from generations.models import Generation
from generations.registry import default_model
from tests.api_support import Api

pytestmark = pytest.mark.django_db

BODY = {"prompt": "a red circle", "width": 64, "height": 64, "steps": 2}


@pytest.fixture(autouse=True)
def closed_circuits() -> Iterator[None]:
    connection = redis.Redis.from_url(django_settings.REDIS_URL)

    def clear() -> None:
        keys = list(connection.scan_iter("atelier:circuit:*"))
        if keys:
            connection.delete(*keys)

    clear()
    yield
    clear()


@pytest.fixture
def fragile(settings: Any) -> ModelSpec:
    """A second model that falls back to the built-in one."""
    spec = ModelSpec(name="fragile", path="/nowhere/fragile", pool="tiny", fallback=default_model().name)
    settings.ATELIER_MODELS = {**settings.ATELIER_MODELS, spec.name: spec}
    return spec


def break_model(name: str) -> None:
    for _ in range(django_settings.ATELIER_CIRCUIT_LOAD_FAILURES):
        circuits.record_load_failure(name)


def test_it_stays_closed_below_the_load_failure_threshold(owner: Api) -> None:
    for _ in range(django_settings.ATELIER_CIRCUIT_LOAD_FAILURES - 1):
        circuits.record_load_failure(default_model().name)
    assert owner.post("/api/v1/generations", BODY).status_code == 202


def test_an_open_circuit_refuses_with_503_and_retry_after_storing_and_charging_nothing(owner: Api) -> None:
    balance = account_for(owner.user).balance  # type: ignore[arg-type]
    break_model(default_model().name)
    response = owner.post("/api/v1/generations", BODY)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_unavailable"
    assert default_model().name in error["message"]
    assert 1 <= int(response["Retry-After"]) <= django_settings.ATELIER_CIRCUIT_OPEN_SECONDS
    assert not Generation.objects.exists()
    assert not CreditEntry.objects.filter(generation__isnull=False).exists()
    assert account_for(owner.user).balance == balance  # type: ignore[arg-type]


def test_a_success_during_a_run_of_load_failures_starts_the_count_again(owner: Api) -> None:
    name = default_model().name
    for _ in range(django_settings.ATELIER_CIRCUIT_LOAD_FAILURES - 1):
        circuits.record_load_failure(name)
    circuits.record_job(name, succeeded=True)
    circuits.record_load_failure(name)
    assert owner.post("/api/v1/generations", BODY).status_code == 202


def test_an_error_rate_over_the_threshold_opens_the_circuit(owner: Api, settings: Any) -> None:
    settings.ATELIER_CIRCUIT_MIN_JOBS = 4
    settings.ATELIER_CIRCUIT_ERROR_RATE = 0.5
    name = default_model().name
    circuits.record_job(name, succeeded=True)
    circuits.record_job(name, succeeded=True)
    circuits.record_job(name, succeeded=False)
    assert owner.post("/api/v1/generations", BODY).status_code == 202
    circuits.record_job(name, succeeded=False)  # 2 of the last 4
    response = owner.post("/api/v1/generations", BODY)
    assert response.status_code == 503
    assert "2 of its last 4 jobs failed" in response.json()["error"]["message"]


def test_half_open_lets_one_probe_through_and_its_success_closes_it(owner: Api, settings: Any) -> None:
    settings.ATELIER_CIRCUIT_OPEN_SECONDS = 0  # open, then half-open at once
    name = default_model().name
    break_model(name)
    probe = owner.post("/api/v1/generations", BODY)
    assert probe.status_code == 202
    assert owner.post("/api/v1/generations", BODY).status_code == 503  # the probe has not ended
    circuits.record_job(name, succeeded=True)
    assert owner.post("/api/v1/generations", BODY).status_code == 202
    assert owner.post("/api/v1/generations", BODY).status_code == 202


def test_a_failed_probe_opens_the_circuit_again(owner: Api, settings: Any) -> None:
    settings.ATELIER_CIRCUIT_OPEN_SECONDS = 0
    name = default_model().name
    break_model(name)
    assert owner.post("/api/v1/generations", BODY).status_code == 202
    settings.ATELIER_CIRCUIT_OPEN_SECONDS = 60
    circuits.record_load_failure(name)  # the probe's load failed: once is enough
    assert owner.post("/api/v1/generations", BODY).status_code == 503


def test_a_refused_probe_lets_the_next_submission_probe(owner: Api, settings: Any) -> None:
    settings.ATELIER_CIRCUIT_OPEN_SECONDS = 0
    break_model(default_model().name)
    account = account_for(owner.user)  # type: ignore[arg-type]
    balance = account.balance
    BillingAccount.objects.filter(pk=account.pk).update(balance=0)
    assert owner.post("/api/v1/generations", BODY).status_code == 402  # it never became the probe
    BillingAccount.objects.filter(pk=account.pk).update(balance=balance)
    assert owner.post("/api/v1/generations", BODY).status_code == 202


def test_an_open_model_runs_on_its_fallback_recorded_on_the_job(owner: Api, fragile: ModelSpec) -> None:
    break_model(fragile.name)
    response = owner.post("/api/v1/generations", {**BODY, "model": fragile.name})
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["model"], body["fallback_from"]) == (default_model().name, fragile.name)
    assert Generation.objects.get(pk=body["id"]).fallback_from == fragile.name


def test_a_request_that_refuses_fallbacks_gets_503(owner: Api, fragile: ModelSpec) -> None:
    break_model(fragile.name)
    response = owner.post("/api/v1/generations", {**BODY, "model": fragile.name, "allow_fallback": False})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_unavailable"
    assert not Generation.objects.exists()


def test_no_fallback_when_the_fallback_cannot_take_the_request(owner: Api, fragile: ModelSpec) -> None:
    break_model(fragile.name)
    wide = {**BODY, "model": fragile.name, "width": 1024}  # fragile allows 1024, the built-in 512
    response = owner.post("/api/v1/generations", wide)
    assert response.status_code == 503


def test_a_closed_model_runs_as_asked(owner: Api, fragile: ModelSpec) -> None:
    body = owner.post("/api/v1/generations", {**BODY, "model": fragile.name}).json()
    assert (body["model"], body["fallback_from"]) == (fragile.name, None)


def test_readyz_and_metrics_tell_of_an_open_circuit(client: Client) -> None:
    break_model(default_model().name)
    ready = client.get("/readyz").json()
    assert ready["status"] == "degraded"
    opened = f"model {default_model().name}: circuit open"
    assert any(reason.startswith(opened) for reason in ready["reasons"])
    text = client.get("/metrics").content.decode()
    assert f'atelier_circuit_open{{model="{default_model().name}",state="open"}} 1' in text


def test_a_fallback_must_name_a_configured_model() -> None:
    value = '[{"name": "a", "path": "/m/a", "fallback": "b"}]'
    with pytest.raises(ValueError, match="unknown model 'b'"):
        parse_models(value, django_settings.DATA_DIR)
    models = parse_models(value[:-1] + ', {"name": "b", "path": "/m/b"}]', django_settings.DATA_DIR)
    assert models["a"].fallback == "b"


def test_the_openai_surface_answers_503_with_retry_after_too(owner: Api) -> None:
    break_model(default_model().name)
    response = owner.post("/v1/images/generations", {"prompt": "a red circle", "size": "256x256"})
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "model_unavailable"
    assert int(response["Retry-After"]) >= 1
    assert not Generation.objects.exists()

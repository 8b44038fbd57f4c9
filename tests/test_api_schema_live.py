"""The OpenAPI schema, the offline docs, and Schemathesis fuzzing the live API against it."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.conftest import ApiUser, Servers

pytestmark = pytest.mark.live


def test_the_schema_and_the_docs_are_served_without_the_internet(servers: Servers) -> None:
    schema = requests.get(servers.url + "/api/v1/schema/?format=json", timeout=10).json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/generations" in schema["paths"]
    post = schema["paths"]["/api/v1/generations"]["post"]
    assert {"202", "400", "402", "429"} <= set(post["responses"])
    docs = requests.get(servers.url + "/api/v1/docs/", timeout=10)
    assert docs.status_code == 200
    assert "cdn" not in docs.text.lower() and "/static/drf_spectacular_sidecar/" in docs.text
    bundle = docs.text.split('src="')[1].split('"')[0]
    assert requests.get(servers.url + bundle, timeout=10).status_code == 200


def test_every_operation_documents_its_success_and_error_answers(servers: Servers) -> None:
    schema = requests.get(servers.url + "/api/v1/schema/?format=json", timeout=10).json()
    operations = [(path, method, op) for path, ops in schema["paths"].items() for method, op in ops.items()]
    assert len(operations) >= 16
    for path, method, operation in operations:
        codes = set(operation["responses"])
        assert any(code.startswith("2") for code in codes), (path, method)
        assert "401" in codes, (path, method)
        errors = [c for c in codes if c.startswith("4")]
        for code in errors:
            body = operation["responses"][code]["content"]["application/json"]["schema"]
            assert body["$ref"].endswith("/Error"), (path, method, code)
        if "requestBody" in operation and method == "post" and path.endswith(("generations", "webhooks")):
            assert any("examples" in media for media in operation["requestBody"]["content"].values()), path


@pytest.fixture
def api_schema(servers: Servers) -> Any:
    return schemathesis.openapi.from_url(servers.url + "/api/v1/schema/?format=json")


schema = schemathesis.pytest.from_fixture("api_schema")


SLOW_FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much]


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=SLOW_FIXTURES)
def test_the_api_never_fails_and_matches_its_schema(case: Any, alice: ApiUser) -> None:
    response = case.call(headers=alice.headers)
    if twisted_refused_the_multipart_body(case, response):
        return
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    created = response.status_code in (201, 202) and case.method == "POST"
    if case.path == "/api/v1/generations" and created:
        cancel = f"/api/v1/generations/{response.json()['id']}/cancel"
        requests.post(alice.url(cancel), headers=alice.headers, timeout=10)


def twisted_refused_the_multipart_body(case: Any, response: Any) -> bool:
    """daphne's HTTP layer (Twisted) answers a malformed multipart body itself, with an empty 400,
    before the request reaches Django; that one answer cannot carry our error shape."""
    content_type = str(case.media_type or "")
    return content_type.startswith("multipart/") and response.status_code == 400 and not response.content

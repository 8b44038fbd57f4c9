"""The OpenAPI description names both ways in: an API key, and a third-party app's OAuth 2
token (authorization code with PKCE) with the scope each operation needs."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.scopes import SCOPES

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema(django_db_blocker: Any) -> dict[str, Any]:
    with django_db_blocker.unblock():
        response = Client().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_the_oauth2_scheme_is_described_with_its_flow_and_scopes(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKey"]["scheme"] == "bearer"
    oauth2 = schemes["oauth2"]
    assert oauth2["type"] == "oauth2" and "PKCE" in oauth2["description"]
    flow = oauth2["flows"]["authorizationCode"]
    assert (flow["authorizationUrl"], flow["tokenUrl"]) == ("/o/authorize/", "/o/token/")
    assert flow["scopes"] == SCOPES


def test_each_operation_names_the_scope_it_needs(schema: dict[str, Any]) -> None:
    def needs(path: str, method: str) -> list[Any]:
        security = schema["paths"][path][method]["security"]
        assert {"apiKey": []} in security
        (oauth2,) = [s["oauth2"] for s in security if "oauth2" in s]
        return list(oauth2)

    assert needs("/api/v1/generations", "post") == ["generate"]
    assert needs("/api/v1/generations", "get") == ["read"]
    assert needs("/api/v1/billing", "get") == ["billing:read"]
    assert needs("/api/v1/images/{image_id}/publish", "post") == ["gallery:write"]
    assert needs("/api/v1/webhooks", "post") == sorted(SCOPES)  # only a token with every scope

"""How the API's authentication appears in the OpenAPI schema: a Bearer API key, or a
third-party app's OAuth 2 access token (authorization code with PKCE, config/oauth_settings.py)
with the scope each operation needs (api/scopes.py), so that clients and generators see both."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.extensions import OpenApiAuthenticationExtension

from accounts.scopes import SCOPES
from api.scopes import needed_scopes

OAUTH2_DESCRIPTION = (
    "A third-party app acting for a member: the authorization code flow with PKCE (S256, required), "
    "for a client registered by staff. Each operation lists the scope it needs; a token without it "
    "gets `403 insufficient_scope`. OpenID Connect discovery: `/o/.well-known/openid-configuration`."
)


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.ApiKeyAuthentication"
    name = ["apiKey", "oauth2"]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        api_key = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `prefix.secret` (every scope unless its owner chose fewer).",
        }
        code_flow = {
            "authorizationUrl": "/o/authorize/",
            "tokenUrl": "/o/token/",
            "refreshUrl": "/o/token/",
            "scopes": dict(SCOPES),
        }
        flows = {"authorizationCode": code_flow}
        return [api_key, {"type": "oauth2", "description": OAUTH2_DESCRIPTION, "flows": flows}]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        """Either an API key, or an access token with the operation's scope."""
        name = url_names_by_view().get(type(auto_schema.view))
        scopes = sorted(needed_scopes(name, auto_schema.method.upper()))
        return [{"apiKey": []}, {"oauth2": scopes}]


@cache
def url_names_by_view() -> dict[type, str]:
    """Each DRF view class's URL name (the schema knows operations by view, the scopes by name)."""
    names: dict[type, str] = {}

    def walk(patterns: list[Any]) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns)
            elif isinstance(pattern, URLPattern) and pattern.name:
                view_class = getattr(pattern.callback, "cls", None)
                if view_class is not None:
                    names.setdefault(view_class, pattern.name)

    walk(get_resolver().url_patterns)
    return names

"""The OpenAPI description (drf-spectacular), kept apart from config/settings.py for length."""

from __future__ import annotations

SPECTACULAR_SETTINGS = {
    "TITLE": "Atelier API",
    "DESCRIPTION": "Image generation: submit, follow, cancel and fetch generations. Errors are always "
    '`{"error": {"code", "message", "details"}}`. Auth: `Authorization: Bearer <key or OAuth token>`.',
    "VERSION": "1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",  # served from this server: the docs work offline
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "EventTypeEnum": "core.events.EVENT_TYPES",
        "SamplerEnum": "generations.samplers.SAMPLER_NAMES",
    },
}

"""What a third-party app (an OAuth access token) or an API key may do: the scopes a member grants.

An API key has every scope unless its owner chose fewer; an OAuth app gets the scopes the member
approved on the consent page. The API edge (api/scopes.py) says which scope each route needs.
Free of Django imports: the settings read it.
"""

from __future__ import annotations

GENERATE = "generate"
READ = "read"
GALLERY_WRITE = "gallery:write"
BILLING_READ = "billing:read"

# Scope -> the sentence a member reads on the consent page and on the API keys page.
SCOPES = {
    GENERATE: "Create images, variations and upscales with your credits",
    READ: "See your generations, images, models and live events",
    GALLERY_WRITE: "Publish, unpublish, like and report images in the gallery",
    BILLING_READ: "See your plan and credit balance",
}
ALL_SCOPES = frozenset(SCOPES)
ALL_SCOPES_TEXT = " ".join(SCOPES)

# OpenID Connect's own scopes: who the member is, for apps that sign people in with Atelier.
IDENTITY_SCOPES = {
    "openid": "Know who you are on Atelier (your user id)",
    "profile": "See your username",
    "email": "See your email address",
}


def parse_scopes(text: str) -> frozenset[str]:
    """The scopes named in a space-separated string (as OAuth writes them)."""
    return frozenset(text.split())

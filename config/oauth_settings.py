"""Atelier as an OAuth 2 / OpenID Connect provider for third-party apps (django-oauth-toolkit):
config/settings.py calls ``oauth_provider`` with its data folder.

Apps are registered in the admin (or with ``manage.py createapplication``); members authorize
them on a consent page with the scopes of accounts/scopes.py, authorization code with PKCE
(S256) only, and see and revoke them on /accounts/apps/. Access tokens are stored as checksums.
ID tokens are signed with an RSA key from ATELIER_OIDC_RSA_PRIVATE_KEY (or ``_FILE``), else one
made once and kept in the data folder: every web process must then share that folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from accounts.scopes import IDENTITY_SCOPES, READ, SCOPES
from core.env import env_int, env_list, env_secret, installation_secret


def new_rsa_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()


def oauth_provider(data_dir: Path, debug: bool) -> dict[str, Any]:
    rsa_key = env_secret("ATELIER_OIDC_RSA_PRIVATE_KEY", "") or installation_secret(
        data_dir / "oidc-rsa-key.pem", new_rsa_key
    )
    return {
        "SCOPES": {**SCOPES, **IDENTITY_SCOPES},
        "DEFAULT_SCOPES": [READ],
        "OAUTH2_VALIDATOR_CLASS": "accounts.oauth_claims.AtelierValidator",
        "OIDC_ENABLED": True,
        "OIDC_RSA_PRIVATE_KEY": rsa_key,
        "PKCE_REQUIRED": True,
        "ACCESS_TOKEN_EXPIRE_SECONDS": env_int("ATELIER_OAUTH_ACCESS_TOKEN_SECONDS", 3600),
        "REFRESH_TOKEN_EXPIRE_SECONDS": env_int("ATELIER_OAUTH_REFRESH_TOKEN_SECONDS", 30 * 24 * 3600),
        # RFC 9700's advice, taken now: S256 only, no implicit or password grants, no tokens in
        # query strings, tokens kept as checksums only (like API keys).
        "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
        "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
        "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
        "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
        "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
        "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,  # the code comes back with who sent it
        "REFRESH_TOKEN_REUSE_PROTECTION": True,  # a replayed refresh token ends its whole family
        # Apps on a laptop may come back to plain http (localhost); in production only to https.
        "ALLOWED_REDIRECT_URI_SCHEMES": env_list(
            "ATELIER_OAUTH_REDIRECT_SCHEMES", "http,https" if debug else "https"
        ),
        "OIDC_RESPONSE_TYPES_SUPPORTED": ["code"],
        "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
        "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "refresh_token"],
    }

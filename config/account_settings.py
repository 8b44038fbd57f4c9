"""Accounts (django-allauth: sign-in, addresses, two factors) and outgoing mail; config/settings.py
takes every name from here.

Mail goes through Django's email backend: SMTP when EMAIL_HOST is set (production), else the
console, so a laptop shows the verification and reset links in the server's output."""

from __future__ import annotations

from typing import Any

from core.env import env_bool, env_float, env_int, env_secret, env_str

ACCOUNT_APPS = [
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.github",
    "allauth.socialaccount.providers.google",
    "allauth.socialaccount.providers.openid_connect",
    "oauth2_provider",  # Atelier as a provider for third-party apps (config/oauth_settings.py)
]

EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Atelier <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Sign-in throttling: this many failures per address or account lock sign-in for this long.
ATELIER_LOGIN_MAX_FAILURES = env_int("ATELIER_LOGIN_MAX_FAILURES", 10)
ATELIER_LOGIN_LOCKOUT_SECONDS = env_int("ATELIER_LOGIN_LOCKOUT_SECONDS", 900)

ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "accounts.adapter.SocialAdapter"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email*", "password1*", "password2*"]
# Signed in at once; what waits for the verified address is the free credits (billing/credits.py).
ACCOUNT_EMAIL_VERIFICATION = "optional"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Atelier] "
ACCOUNT_MAX_EMAIL_ADDRESSES = 5
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
# Sign-ups are counted in Redis by accounts/throttle.py, with the sign-in lockout, shared by every
# web process; allauth's own counters (in Django's cache) keep the rest, among them "login_failed",
# which also bounds the guesses at a second factor (5 in 5 minutes per account).
ACCOUNT_RATE_LIMITS = {"signup": None}

# Two factors: an authenticator app (TOTP) with recovery codes. One period either side of now is
# accepted (clocks drift); a code is taken once. Staff made by createsuperuser have no verified
# address, yet ATELIER_STAFF_MFA needs them to set up an app.
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Atelier"
MFA_TOTP_TOLERANCE = 1
MFA_ALLOW_UNVERIFIED_EMAIL = True


# Social sign-in: GitHub and Google once their OAuth app's id and secret are set, and one OpenID
# Connect provider (any issuer: Keycloak, Auth0, or another Atelier at https://host/o) from
# ATELIER_OIDC_*; more apps can be added in the admin (Social applications). PKCE always.


def social_apps(prefix: str, name: str, **extra: Any) -> list[dict[str, Any]]:
    """The provider's app from PREFIX_CLIENT_ID and PREFIX_CLIENT_SECRET (or ``_FILE``); none unset."""
    client_id = env_str(f"{prefix}_CLIENT_ID", "")
    if not client_id:
        return []
    return [
        {"client_id": client_id, "secret": env_secret(f"{prefix}_CLIENT_SECRET", ""), "name": name, **extra}
    ]


SOCIALACCOUNT_PROVIDERS = {
    "github": {"APPS": social_apps("GITHUB", "GitHub")},
    "google": {"APPS": social_apps("GOOGLE", "Google"), "OAUTH_PKCE_ENABLED": True},
    "openid_connect": {
        "OAUTH_PKCE_ENABLED": True,
        "APPS": social_apps(
            "ATELIER_OIDC",
            env_str("ATELIER_OIDC_NAME", "Single sign-on"),
            provider_id=env_str("ATELIER_OIDC_PROVIDER_ID", "sso"),
            settings={"server_url": env_str("ATELIER_OIDC_URL", "")},
        ),
    },
}


def cache_in_redis(url: str) -> dict[str, Any]:
    """Django's cache, where allauth counts and remembers (core/cache.py), shared by every process;
    the "rl" prefix puts it among the rate-limit keys that the tests reset."""
    return {
        "BACKEND": "core.cache.LenientRedisCache",
        "LOCATION": url,
        "KEY_PREFIX": "atelier:rl:cache",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }

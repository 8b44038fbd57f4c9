"""The address of the client, behind the reverse proxies we trust (ATELIER_TRUSTED_PROXIES).

Every check keyed on who is asking (rate limits, the sign-in lockout, /metrics's allowlist) uses
this, not REMOTE_ADDR: behind a proxy REMOTE_ADDR is the proxy, the same for everyone.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The address of the hop just before our trusted proxies; X-Forwarded-For entries added by
    the client itself are ignored, so rotating them changes nothing."""
    remote = str(request.META.get("REMOTE_ADDR", ""))
    proxies = settings.ATELIER_TRUSTED_PROXIES
    if proxies <= 0:
        return remote
    header = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    forwarded = [part.strip() for part in header.split(",") if part.strip()]
    # The last `proxies` addresses (counting REMOTE_ADDR) were written by our proxies.
    chain = [*forwarded, remote]
    return chain[-(proxies + 1)] if len(chain) > proxies else chain[0]

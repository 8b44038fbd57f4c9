"""Which URLs deliveries may go to: no requests into our own network (SSRF)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class UnsafeUrl(ValueError):
    pass


def check_url(url: str) -> None:
    """Raise UnsafeUrl unless ``url`` may receive webhooks. In production only https, and never an
    address that is private, loopback, link-local, reserved or multicast (checked again at each
    delivery, so a DNS change cannot point an accepted hostname inward later)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("The URL must be http(s) with a host.")
    if settings.ATELIER_WEBHOOK_ALLOW_PRIVATE:
        return
    if parts.scheme != "https":
        raise UnsafeUrl("Webhook URLs must use https.")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeUrl(f"The host {parts.hostname} does not resolve.") from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global or address.is_multicast:
            raise UnsafeUrl(f"The host {parts.hostname} resolves to a non-public address ({address}).")

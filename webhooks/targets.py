"""Which URLs deliveries may go to: no requests into our own network (SSRF).

A URL is resolved once, here; every address it resolves to is checked, and the delivery connects
to one of exactly those addresses (webhooks/transport.py), so a DNS answer that changes between
the check and the connection (rebinding) cannot point a delivery inward.

The lookup has a time limit (the delivery's deadline): the system resolver (getaddrinfo) cannot be
cancelled, so it runs on a small pool of lookup threads and the caller stops waiting for it when
the time is up. A slow resolver then holds a lookup thread until it gives up by itself, never a
delivery thread or a request past its deadline.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as LookupTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 ranges that carry an IPv4 address inside, which the operating system or a gateway may turn
# into a connection to that IPv4 address: compatible (::a.b.c.d, also :: and ::1), mapped
# (::ffff:a.b.c.d), NAT64 (64:ff9b::/96 and the local-use 64:ff9b:1::/48), 6to4 (2002::/16).
# Python's `is_global` calls several of these global; a webhook never needs them.
EMBEDDED_IPV4 = [
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("::ffff:0:0/96"),
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("2002::/16"),
]


class UnsafeUrl(ValueError):
    pass


class LookupTooSlow(UnsafeUrl):
    """The host's name did not resolve within the time given."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (the addresses it resolved to, once) and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[IPAddress, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def check_url(url: str) -> None:
    """Raise UnsafeUrl unless ``url`` may receive webhooks (see ``resolve``); the name must
    resolve within a delivery's deadline."""
    resolve(url, timeout=settings.ATELIER_WEBHOOK_DEADLINE)


def resolve(url: str, *, timeout: float) -> Target:
    """The checked target of ``url``, or UnsafeUrl (LookupTooSlow when the name did not resolve
    within ``timeout`` seconds). Unless private targets are explicitly allowed
    (ATELIER_WEBHOOK_ALLOW_PRIVATE): only https, and no address that is private, loopback,
    link-local, reserved, multicast, or an IPv6 form of an IPv4 address. Checked again at each
    delivery, so a DNS change cannot point an accepted hostname inward later."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("The URL must be http(s) with a host.")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if not 0 < port < 65536:
        raise UnsafeUrl("The port must be a number from 1 to 65535.")
    host = parts.hostname
    refuse_ambiguous_ipv4(host)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in path):
        raise UnsafeUrl("The URL's path must not contain spaces or control characters.")
    allow_private = settings.ATELIER_WEBHOOK_ALLOW_PRIVATE
    if not allow_private and parts.scheme != "https":
        raise UnsafeUrl("Webhook URLs must use https.")
    addresses = lookup(host, port, timeout=timeout)
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise UnsafeUrl(f"The host {host} resolves to a non-public address ({address}).")
    return Target(parts.scheme, host, port, path, addresses)


_lookups: ThreadPoolExecutor | None = None
_lookups_lock = threading.Lock()


def lookup_pool() -> ThreadPoolExecutor:
    global _lookups
    with _lookups_lock:
        if _lookups is None:
            workers = max(2, settings.ATELIER_WEBHOOK_CONCURRENCY)
            _lookups = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook-dns")
        return _lookups


def lookup(host: str, port: int, *, timeout: float) -> tuple[IPAddress, ...]:
    """The addresses ``host`` resolves to, by the system resolver, waited for ``timeout`` seconds."""
    future = lookup_pool().submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=max(timeout, 0))
    except LookupTimeout:
        future.cancel()  # still queued behind slow lookups: it never needs to run
        raise LookupTooSlow(f"The host {host} did not resolve within {timeout:.3g} s.") from None
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"The host {host} does not resolve.") from exc
    return tuple(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))


def is_public(address: IPAddress) -> bool:
    if not address.is_global or address.is_multicast:
        return False
    return not (isinstance(address, ipaddress.IPv6Address) and any(address in n for n in EMBEDDED_IPV4))


def refuse_ambiguous_ipv4(host: str) -> None:
    """Refuse IPv4 addresses not written as four plain decimals: 2130706433, 0x7f.1, 0177.0.0.1.
    Resolvers read them in different ways (octal or decimal), so what was checked need not be what
    another reader connects to; a URL whose host ends in a number is an address (WHATWG URL)."""
    last = host.rstrip(".").rsplit(".", 1)[-1]
    if not (last.isdigit() or last.lower().startswith("0x")):
        return
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise UnsafeUrl(f"The host {host} is not a valid IPv4 address written as a.b.c.d.") from None

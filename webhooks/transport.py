"""Posting one webhook: the one module that talks to receivers.

The connection goes to an address that targets.resolve() checked, with the URL's host in the
`Host` header and as the TLS server name (certificates are verified against it), so there is no
second DNS lookup for a rebinding answer to slip into. The whole exchange (connect, TLS
handshake, request, status line and headers) has one deadline: a socket timeout bounds a single
read, so a receiver dripping a byte a second would outlast any timeout, never the deadline. Only
the status is kept; the response body is never read.

Name resolution is inside the deadline too: the lookup gets what is left of it (targets.lookup).
"""

from __future__ import annotations

import functools
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from webhooks.targets import LookupTooSlow, Target, UnsafeUrl, resolve

T = TypeVar("T")
MAX_HEAD_BYTES = 16 * 1024  # status line and headers; a longer answer is refused


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class DeadlineExceeded(Exception):
    pass


class BadResponse(Exception):
    pass


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"no complete answer within the {self.seconds:g} s deadline")
        return left


def post(url: str, body: bytes, headers: dict[str, str], *, deadline_seconds: float) -> Outcome:
    """POST ``body`` to ``url``; never raises, never takes much longer than the deadline."""
    started = time.monotonic()
    status_code, error = None, ""
    deadline = Deadline(deadline_seconds)
    try:
        target = resolve(url, timeout=deadline.left())
        status_code = exchange(target, body, headers, deadline)
    except LookupTooSlow as exc:
        error = f"deadline: {exc}"
    except UnsafeUrl as exc:
        error = f"refused: {exc}"
    except DeadlineExceeded as exc:
        error = f"deadline: {exc}"
    except BadResponse as exc:
        error = f"bad response: {exc}"
    except (OSError, ValueError) as exc:  # refused, reset, unreachable, TLS errors, bad certificate
        error = f"{type(exc).__name__}: {exc}"
    return Outcome(status_code, error[:300], int((time.monotonic() - started) * 1000))


def exchange(target: Target, body: bytes, headers: dict[str, str], deadline: Deadline) -> int:
    sock = connect(target, deadline)
    try:
        if target.scheme == "https":
            sock = start_tls(sock, target.host, deadline)
        send_all(sock, request_bytes(target, body, headers), deadline)
        return read_status(sock, deadline)
    finally:
        sock.close()


def connect(target: Target, deadline: Deadline) -> socket.socket:
    last_error: OSError = OSError("no address to connect to")
    for address in target.addresses:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.left())  # one connect call: a timeout bounds it whole
            sock.connect((str(address), target.port))
        except TimeoutError:
            sock.close()
            deadline.left()
            last_error = TimeoutError(f"connecting to {address} timed out")
        except OSError as exc:
            sock.close()
            last_error = exc
        else:
            sock.setblocking(False)
            return sock
    raise last_error


def start_tls(sock: socket.socket, server_name: str, deadline: Deadline) -> ssl.SSLSocket:
    tls = ssl.create_default_context().wrap_socket(
        sock, server_hostname=server_name, do_handshake_on_connect=False
    )
    until_done(tls, tls.do_handshake, deadline, writing=False)
    return tls


def request_bytes(target: Target, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {target.host_header}",
        "User-Agent: Atelier-Webhooks/1",
        "Connection: close",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def send_all(sock: socket.socket, data: bytes, deadline: Deadline) -> None:
    offset = 0
    while offset < len(data):
        rest = memoryview(data)[offset:]
        offset += until_done(sock, functools.partial(sock.send, rest), deadline, writing=True)


def read_status(sock: socket.socket, deadline: Deadline) -> int:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = until_done(sock, lambda: sock.recv(4096), deadline, writing=False)
        if not chunk:
            raise BadResponse("the receiver closed the connection before the end of the headers")
        head += chunk
        if len(head) > MAX_HEAD_BYTES and b"\r\n\r\n" not in head[:MAX_HEAD_BYTES]:
            raise BadResponse(f"the headers are longer than {MAX_HEAD_BYTES} bytes")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    code = parts[1] if len(parts) > 1 else ""
    if not parts[0].startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3):
        raise BadResponse(f"not an HTTP/1.x status line: {status_line[:60]!r}")
    return int(code)


def until_done(sock: socket.socket, operation: Callable[[], T], deadline: Deadline, *, writing: bool) -> T:
    """Run a non-blocking ``operation``, waiting for the socket between tries, until the deadline."""
    while True:
        try:
            return operation()
        except ssl.SSLWantReadError:
            wait_for_write = False
        except ssl.SSLWantWriteError:
            wait_for_write = True
        except BlockingIOError:
            wait_for_write = writing
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_WRITE if wait_for_write else selectors.EVENT_READ)
            if not selector.select(deadline.left()):
                deadline.left()  # raises once the time is up; a spurious wake-up just tries again

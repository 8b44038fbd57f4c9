"""A DNS server that answers only when told to, and a run of the webhook transport against it
through the system resolver (glibc's getaddrinfo reading /etc/resolv.conf).

Run as a script inside new user, mount and network namespaces (tests/test_webhook_dns_deadline.py
starts it with `unshare`): there it can put its own resolv.conf over /etc/resolv.conf and serve
DNS on 127.0.0.1:53 of a loopback no one else shares, without touching the machine's resolver.
It prints what it saw as JSON on its last line.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

HOST = "slow-receiver.atelier.test"


class HeldDns:
    """Answers A queries with 127.0.0.1 (AAAA with no address), each once ``release`` is set."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.release = threading.Event()
        self.queries: list[str] = []
        self.answered = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            packet, client = self.sock.recvfrom(4096)
            threading.Thread(target=self.answer, args=(packet, client), daemon=True).start()

    def answer(self, packet: bytes, client: tuple[str, int]) -> None:
        name, end = read_name(packet, 12)
        (qtype,) = struct.unpack("!H", packet[end : end + 2])
        with self.lock:
            self.queries.append(name)
        self.release.wait()
        question = packet[12 : end + 4]
        records = b""
        if qtype == 1 and name == HOST:  # A
            records = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
        header = packet[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if records else 0, 0, 0)
        self.sock.sendto(header + question + records, client)
        with self.lock:
            self.answered += 1


def read_name(packet: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode())
        offset += 1 + length
    return ".".join(labels), offset + 1


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def own_resolver() -> None:
    """Loopback up, and this namespace's /etc/resolv.conf naming a server on it that is waited
    for long (30 s, one try): a lookup that is not cut by the deadline shows it."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    conf = Path(tempfile.mkdtemp()) / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\noptions timeout:30 attempts:1\n")
    subprocess.run(["mount", "--bind", str(conf), "/etc/resolv.conf"], check=True)


def main() -> None:
    own_resolver()
    dns = HeldDns(("127.0.0.1", 53))
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    url = f"http://{HOST}:{web.server_address[1]}/hook"

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from webhooks import transport
    from webhooks.targets import UnsafeUrl, check_url

    held = transport.post(url, b"{}", {}, deadline_seconds=1)
    seen: dict[str, Any] = {"held_error": held.error, "held_status": held.status_code}
    with dns.lock:
        seen |= {"queries_while_held": list(dns.queries), "answered_while_held": dns.answered}
    try:
        check_url(url)
        seen["check_error"] = ""
    except UnsafeUrl as exc:
        seen["check_error"] = str(exc)
    dns.release.set()
    answered = transport.post(url, b"{}", {}, deadline_seconds=5)
    seen |= {"answered_status": answered.status_code, "answered_error": answered.error}
    print(json.dumps(seen))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()

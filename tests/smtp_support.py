"""A real SMTP server: aiosmtpd in a process of its own on loopback, keeping every message it
receives in a maildir that the tests read."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from scripts.private_redis import free_port


@dataclass
class MailServer:
    port: int
    maildir: Path

    def messages(self) -> list[EmailMessage]:
        parser = BytesParser(policy=policy.default)
        files = sorted(
            (*self.maildir.glob("new/*"), *self.maildir.glob("cur/*")), key=lambda f: f.stat().st_mtime
        )
        return [parser.parsebytes(path.read_bytes()) for path in files]

    def sent_to(self, address: str, about: str = "") -> list[EmailMessage]:
        """The messages to ``address`` whose subject contains ``about``, oldest first."""
        return [m for m in self.messages() if address in str(m["To"]) and about in str(m["Subject"])]

    def wait_for_mail(
        self, address: str, about: str = "", count: int = 1, timeout: float = 30
    ) -> EmailMessage:
        """The ``count``-th message to ``address`` about ``about``, once it has arrived."""
        deadline = time.monotonic() + timeout
        while len(received := self.sent_to(address, about)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no mail number {count} to {address} about {about!r} after {timeout} s")
            time.sleep(0.05)
        return received[count - 1]


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None, "the mail has a plain-text part"
    content: str = body.get_content()
    return content


def link_in(message: EmailMessage, path_part: str) -> str:
    links: list[str] = [link for link in re.findall(r"https?://\S+", text_of(message)) if path_part in link]
    assert links, f"no link to {path_part} in:\n{text_of(message)}"
    return links[0]


@pytest.fixture(scope="session")
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailServer]:
    port = free_port()
    maildir = tmp_path_factory.mktemp("mail") / "maildir"  # aiosmtpd makes it, with new/ cur/ tmp/
    command = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"]
    process = subprocess.Popen([*command, "-c", "aiosmtpd.handlers.Mailbox", str(maildir)])
    try:
        deadline = time.monotonic() + 30
        while not accepts_connections(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the SMTP server did not start")
            time.sleep(0.05)
        yield MailServer(port, maildir)
    finally:
        process.terminate()
        process.wait(timeout=20)


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def mail_through_smtp(settings: Any, smtp_server: MailServer) -> MailServer:
    """This process's mail goes out through the SMTP server (pytest-django keeps it in memory)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    return smtp_server


def smtp_env(smtp_server: MailServer) -> dict[str, str]:
    """The environment that points a web process's mail at the SMTP server."""
    return {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_server.port), "EMAIL_USE_TLS": "0"}

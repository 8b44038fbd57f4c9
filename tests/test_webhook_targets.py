"""SSRF: a delivery connects to the address that was checked, answers are not kept, and every
spelling of an inward address is refused. Real receivers on loopback; only DNS is played."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from accounts.services import api_key_create
from generations.dispatcher import tick
from generations.events import record_webhooks
from tests.webhook_support import Receiver
from webhooks.models import WebhookDelivery

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_targets_allowed")]
PUBLIC = "93.184.216.34"


def api_for(name: str) -> tuple[User, Client]:
    user = User.objects.create_user(name)
    _, key = api_key_create(user=user)
    return user, Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def register(api: Client, url: str) -> Any:
    return api.post("/api/v1/webhooks", {"url": url}, content_type="application/json")


def deliver(delivery: WebhookDelivery, seconds: float = 5.0) -> None:
    """Tick as the dispatcher does until the delivery has had an attempt."""
    until = time.monotonic() + seconds
    while not delivery.attempt_log.exists():
        assert time.monotonic() < until, "no attempt recorded"
        tick()
        time.sleep(0.05)


@pytest.mark.parametrize(
    "url",
    [
        "https://[::127.0.0.1]/hooks",  # IPv4-compatible IPv6
        "https://[::ffff:127.0.0.1]/hooks",  # IPv4-mapped
        "https://[::ffff:5db8:d822]/hooks",  # mapped, even of a public address
        "https://[64:ff9b::a00:1]/hooks",  # NAT64 of 10.0.0.1
        "https://[2002:7f00:1::]/hooks",  # 6to4 of 127.0.0.1
        "https://2130706433/hooks",  # 127.0.0.1 in decimal
        "https://0177.0.0.1/hooks",  # octal
        "https://0x7f.1/hooks",  # hexadecimal, short form
        "https://127.1/hooks",
        "https://01.02.03.04/hooks",  # leading zeros: octal to some readers
    ],
)
def test_in_production_every_spelling_of_an_inward_address_is_refused(url: str, settings: Any) -> None:
    settings.ATELIER_WEBHOOK_ALLOW_PRIVATE = False
    _, api = api_for("speller")
    response = register(api, url)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_error"
    assert "url" in response.json()["error"]["details"]


@pytest.mark.parametrize("allow_private", [False, True])
def test_a_port_past_65535_is_a_400_on_every_route(allow_private: bool, settings: Any) -> None:
    settings.ATELIER_WEBHOOK_ALLOW_PRIVATE = allow_private
    _, api = api_for("porter")
    url = "https://hooks.example.com:70000/hooks"
    response = register(api, url)
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"
    created = register(api, f"https://{PUBLIC}/hooks").json()
    patch = api.patch(f"/api/v1/webhooks/{created['id']}", {"url": url}, content_type="application/json")
    assert patch.status_code == 400 and "url" in patch.json()["error"]["details"]
    body = {"prompt": "a kite", "width": 64, "height": 64, "steps": 2, "webhook_url": url}
    submitted = api.post("/api/v1/generations", body, content_type="application/json")
    assert submitted.status_code == 400 and "webhook_url" in submitted.json()["error"]["details"]


def test_a_rebinding_name_cannot_point_a_delivery_inward(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name answers a public address to every check and loopback just after: a sender that
    resolves again to connect would reach the listener on loopback."""
    settings.ATELIER_WEBHOOK_ALLOW_PRIVATE = False
    settings.ATELIER_WEBHOOK_DEADLINE = 0.5
    inside = socket.create_server(("127.0.0.1", 0))
    inside.settimeout(0.2)
    port = inside.getsockname()[1]
    answers = iter([PUBLIC, PUBLIC])  # registration's check, then the delivery's; loopback after
    real = socket.getaddrinfo

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.example":
            return real(host, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers, "127.0.0.1"), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        user, api = api_for("rebinder")
        assert register(api, f"https://rebind.example:{port}/hooks").status_code == 201
        record_webhooks(user.pk, {"type": "generation.failed", "id": "g", "at": timezone.now().isoformat()})
        delivery = WebhookDelivery.objects.get()
        deliver(delivery)
        with pytest.raises(TimeoutError):
            inside.accept()  # nothing ever connected inward
        assert delivery.attempt_log.get().status_code is None
    finally:
        inside.close()


def test_the_deliveries_log_keeps_status_and_timing_but_never_the_answer(receiver: Receiver) -> None:
    receiver.answer = b"root:x:0:0:an answer from inside"
    user, api = api_for("reader")
    endpoint = register(api, receiver.url).json()
    record_webhooks(user.pk, {"type": "generation.failed", "id": "g", "at": timezone.now().isoformat()})
    deliver(WebhookDelivery.objects.get())
    log = api.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries")
    attempt = log.json()["data"][0]["attempts"][0]
    assert attempt["status_code"] == 200 and attempt["duration_ms"] >= 0
    assert "response" not in attempt and b"an answer from inside" not in log.content


@pytest.mark.parametrize("host", ["1572395042", "0135.0270.0330.042", "0x5d.0xb8.0xd8.0x22", "93.184.55330"])
def test_decimal_octal_and_hex_spellings_are_refused_on_the_page_too(host: str, settings: Any) -> None:
    """The API's URL field refuses them already; the page and a generation's webhook_url do not
    go through it. Each spells 93.184.216.34, a public address."""
    settings.ATELIER_WEBHOOK_ALLOW_PRIVATE = False
    user = User.objects.create_user("page_speller")
    browser = Client()
    browser.force_login(user)
    page = browser.post("/accounts/webhooks/", {"url": f"https://{host}/hooks"})
    assert "cannot receive webhooks" in page.content.decode()
    assert not user.webhooks.exists()


def certificate_files(tmp_path: Any, name: str) -> tuple[str, str, str]:
    """A CA, and a server certificate it signed for ``name``: (ca.pem, cert.pem, key.pem)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def named(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(hours=1)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder(named("test ca"), named("test ca"), ca_key.public_key(), 1, now, later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder(ca.subject, named(name), key.public_key(), 2, now, later)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = [str(tmp_path / f) for f in ("ca.pem", "cert.pem", "key.pem")]
    pem = serialization.Encoding.PEM
    for path, data in zip(
        paths,
        [
            ca.public_bytes(pem),
            cert.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        ],
        strict=True,
    ):
        with open(path, "wb") as file:
            file.write(data)
    return paths[0], paths[1], paths[2]


@pytest.mark.parametrize("certified", ["hooks.test", "someone-else.test"])
def test_https_goes_to_the_checked_address_with_the_names_host_sni_and_certificate(
    certified: str, receiver: Receiver, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl

    ca, cert, key = certificate_files(tmp_path, certified)
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    port = receiver.server.server_address[1]
    monkeypatch.setenv("SSL_CERT_FILE", ca)
    real = socket.getaddrinfo

    def resolve(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    user = User.objects.create_user("tls")
    user.webhooks.create(url=f"https://hooks.test:{port}/hooks", secret="whsec_" + "A" * 44)
    record_webhooks(user.pk, {"type": "generation.failed", "id": "g", "at": timezone.now().isoformat()})
    delivery = WebhookDelivery.objects.get()
    deliver(delivery)
    attempt = delivery.attempt_log.get()
    assert server_names == ["hooks.test"]
    if certified == "hooks.test":
        assert attempt.status_code == 200
        assert receiver.received[0][0]["Host"] == f"hooks.test:{port}"
    else:
        assert attempt.status_code is None and "certificate" in attempt.error.lower()
        assert receiver.received == []


def test_a_stranger_cannot_change_or_delete_someone_elses_endpoint() -> None:
    _, owner = api_for("endpoint_owner")
    _, stranger = api_for("endpoint_stranger")
    created = register(owner, f"https://{PUBLIC}/hooks").json()
    path = f"/api/v1/webhooks/{created['id']}"
    patched = stranger.patch(path, {"url": f"https://{PUBLIC}/mine"}, content_type="application/json")
    assert patched.status_code == 404 and patched.json()["error"]["code"] == "not_found"
    assert stranger.delete(path).status_code == 404
    assert stranger.post(f"{path}/test").status_code == 404
    assert stranger.get(f"{path}/deliveries").status_code == 404
    assert owner.get(path).json()["url"] == created["url"]

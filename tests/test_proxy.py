"""The shipped reverse proxy: Debian's nginx with deploy/nginx/atelier.conf in front of a real
gunicorn (HTTP) and a real daphne (WebSockets), in production mode, over TLS."""

from __future__ import annotations

import http.client
import io
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image as PILImage
from websockets.sync.client import connect

from accounts.models import User
from accounts.services import api_key_create
from billing.credits import account_for
from scripts.nginx_proxy import NginxMissing, ProxySite, find_nginx, start_nginx, write_config
from scripts.private_redis import free_port
from tests.conftest import ROOT, EventStream, child_env, make_user, stop, wait_for
from tests.gallery_support import make_image

pytestmark = pytest.mark.live
BODY_LIMIT = 300_000  # ATELIER_REQUEST_MAX_BYTES, for the app and the proxy alike


@dataclass
class Stack:
    http: str  # http://127.0.0.1:PORT
    https: str
    certificate: Path
    static_root: Path
    web_port: int
    env: dict[str, str]
    access_log: Path

    @property
    def https_port(self) -> int:
        return int(self.https.rsplit(":", 1)[1])

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.https + path, verify=str(self.certificate), timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.https + path, verify=str(self.certificate), timeout=30, **kwargs)


def production_env(static_root: Path) -> dict[str, str]:
    env = {**child_env(), "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "p" * 20 + "Qx7!mK2#vB9@nL4$" * 3}
    env.update(
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        ATELIER_TRUSTED_PROXIES="1",  # exactly the one proxy in front
        ATELIER_HASHED_STATIC="1",
        STATIC_ROOT=str(static_root),
        ATELIER_REQUEST_MAX_BYTES=str(BODY_LIMIT),
        ATELIER_METRICS_TOKEN="",
        ATELIER_METRICS_ALLOW="127.0.0.2",
        WEB_CONCURRENCY="1",
    )
    return env


@pytest.fixture(scope="module")
def stack(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    try:
        nginx = find_nginx(install=False)
    except NginxMissing as missing:  # CI installs it (.ci/run, scripts/test.py): missing is a failure
        pytest.fail(str(missing))
    folder = tmp_path_factory.mktemp("proxy")
    env = production_env(folder / "static")
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "collectstatic", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True)
    web_port, ws_port, http_port, https_port = free_port(), free_port(), free_port(), free_port()
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py"]
    daphne = [sys.executable, "-m", "daphne", "-p", str(ws_port), "config.asgi:application"]
    site = ProxySite(
        web=[f"127.0.0.1:{web_port}"],
        ws=[f"127.0.0.1:{ws_port}"],
        http_port=http_port,
        https_port=https_port,
        static_root=folder / "static",
        request_max_bytes=BODY_LIMIT,
    )
    processes = [
        subprocess.Popen(gunicorn, cwd=ROOT, env={**env, "WEB_BIND": f"127.0.0.1:{web_port}"}),
        subprocess.Popen(daphne, cwd=ROOT, env=env),
    ]
    try:
        with (folder / "access.log").open("wb") as access_log:  # nginx holds its own copy
            processes.append(
                start_nginx(write_config(site, folder / "nginx"), binary=nginx, access_log=access_log)
            )
        live = Stack(
            http=f"http://127.0.0.1:{http_port}",
            https=f"https://127.0.0.1:{https_port}",
            certificate=folder / "nginx" / "tls" / "localhost.crt",
            static_root=folder / "static",
            web_port=web_port,
            env=env,
            access_log=folder / "access.log",
        )
        wait_for(lambda: live.get("/healthz").status_code == 200, 120, "gunicorn behind nginx")
        wait_for(lambda: live.get("/ws/v1/events/").status_code in {400, 404, 426}, 60, "daphne behind nginx")
        yield live
    finally:
        for process in reversed(processes):
            stop(process)


def api_key(username: str) -> str:
    user = make_user(username)
    account_for(user)
    _, key = api_key_create(user=user, name="proxy")
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(stack: Stack, key: str, prompt: str) -> str:
    body = {"prompt": prompt, "width": 64, "height": 64, "steps": 4}
    response = stack.post("/api/v1/generations", json=body, headers=bearer(key))
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_pages_and_the_api_are_served_over_tls_and_plain_http_is_sent_there(
    stack: Stack, transactional_db: None
) -> None:
    plain = requests.get(stack.http + "/accounts/login/", allow_redirects=False, timeout=30)
    assert plain.status_code == 301  # X-Forwarded-Proto told the app the request was not secure
    assert plain.headers["Location"].startswith("https://127.0.0.1")
    page = stack.get("/accounts/login/")
    assert page.status_code == 200 and "Sign in" in page.text
    assert "max-age=31536000" in page.headers["Strict-Transport-Security"]
    assert "nginx/" not in page.headers.get("Server", "")  # no version advertised

    key = api_key("proxy-api")
    models = stack.get("/api/v1/models", headers=bearer(key))
    assert models.status_code == 200 and models.json()["data"]
    assert "RateLimit-Remaining" in models.headers
    generation_id = submit(stack, key, "through the proxy")
    detail = stack.get(f"/api/v1/generations/{generation_id}", headers=bearer(key))
    # A worker of the stack may already have taken it: the read works through the proxy either way.
    assert detail.status_code == 200 and detail.json()["id"] == generation_id
    assert detail.json()["status"] in {"queued", "running", "succeeded"}


def test_websocket_events_reach_the_client_through_the_proxy(stack: Stack, transactional_db: None) -> None:
    key = api_key("proxy-events")
    tls = ssl.create_default_context(cafile=str(stack.certificate))
    url = stack.https.replace("https://", "wss://") + "/ws/v1/events/"
    with EventStream(connect(url, ssl=tls, additional_headers=bearer(key))) as stream:
        assert stream.next()["type"] == "snapshot"
        generation_id = submit(stack, key, "events through the proxy")
        queued = stream.until(generation_id, {"generation.queued"}, timeout=60)
    assert queued[-1]["id"] == generation_id
    # ComfyUI clients open their socket at /ws (a key in the base URL): it reaches daphne too.
    comfy = stack.https.replace("https://", "wss://") + f"/comfy/{key}/ws?clientId=proxy-test"
    with connect(comfy, ssl=tls) as socket:
        assert '"status"' in str(socket.recv(timeout=30))


def test_static_files_are_served_by_the_proxy_with_long_caching_when_hashed(
    stack: Stack, transactional_db: None
) -> None:
    page = stack.get("/accounts/login/").text
    hashed = re.search(r'href="(/static/app\.[0-9a-f]{12}\.css)"', page)
    assert hashed, "pages name hashed static files"
    response = stack.get(hashed.group(1))
    assert response.status_code == 200 and "text/css" in response.headers["Content-Type"]
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.content == (stack.static_root / hashed.group(1).removeprefix("/static/")).read_bytes()
    plain = stack.get("/static/app.css")  # an unversioned name may change: an hour only
    assert plain.status_code == 200 and plain.headers["Cache-Control"] == "public, max-age=3600"


def test_published_images_are_cached_by_the_proxy_and_private_ones_never(
    stack: Stack, transactional_db: None
) -> None:
    owner = User.objects.create_user("proxy-owner", password="x")
    key = api_key_create(user=owner, name="proxy")[1]
    published = make_image(owner, public=True)
    private = make_image(owner, public=False)

    first = stack.get(f"/api/v1/images/{published.id}/content")
    second = stack.get(f"/api/v1/images/{published.id}/content")
    assert first.status_code == second.status_code == 200
    assert first.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert (first.headers["X-Cache-Status"], second.headers["X-Cache-Status"]) == ("MISS", "HIT")
    assert second.content == first.content and second.content.startswith(b"\x89PNG")

    for _ in range(2):
        mine = stack.get(f"/api/v1/images/{private.id}/content", headers=bearer(key))
        assert mine.status_code == 200 and mine.headers["X-Cache-Status"] == "MISS"
        assert mine.headers["Cache-Control"].startswith("private")
    assert stack.get(f"/api/v1/images/{private.id}/content").status_code == 401


def request_from(stack: Stack, source: str, path: str, headers: dict[str, str] | None = None) -> int:
    """A request whose TCP connection comes from ``source`` (any 127.x address is this host)."""
    tls = ssl.create_default_context(cafile=str(stack.certificate))
    connection = http.client.HTTPSConnection(
        "127.0.0.1", stack.https_port, source_address=(source, 0), context=tls, timeout=30
    )
    try:
        connection.request("GET", path, headers=headers or {})
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_app_sees_the_clients_address_not_the_proxys(stack: Stack, transactional_db: None) -> None:
    # /metrics is allowed to 127.0.0.2 only; nginx itself connects to the app from 127.0.0.1.
    assert request_from(stack, "127.0.0.2", "/metrics") == 200
    assert request_from(stack, "127.0.0.3", "/metrics") == 403
    # A client cannot pass for another by writing X-Forwarded-For itself.
    assert request_from(stack, "127.0.0.3", "/metrics", {"X-Forwarded-For": "127.0.0.2"}) == 403


def noise_png(side: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def test_bodies_over_the_limit_are_refused_by_the_proxy(stack: Stack, transactional_db: None) -> None:
    key = api_key("proxy-uploader")
    image = noise_png(180)
    assert 50_000 < len(image) < BODY_LIMIT
    accepted = stack.post("/api/v1/uploads", files={"file": ("noise.png", image)}, headers=bearer(key))
    assert accepted.status_code == 201, accepted.text

    too_large = os.urandom(BODY_LIMIT + 1)
    declared = stack.post("/api/v1/uploads", files={"file": ("big.png", too_large)}, headers=bearer(key))
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: only the proxy can bound this body
        for start in range(0, len(too_large), 16_384):
            yield too_large[start : start + 16_384]

    chunked = stack.post("/api/v1/generations", data=chunks(), headers=bearer(key))
    assert chunked.status_code == 413
    assert chunked.json()["error"]["details"]["limit"] == BODY_LIMIT


def test_the_containers_health_check_passes_on_production_settings(
    stack: Stack, transactional_db: None
) -> None:
    """docker-compose's check (scripts/readyz.py) on gunicorn itself, with no proxy before it."""
    check = [sys.executable, "scripts/readyz.py"]
    ready = subprocess.run([*check, str(stack.web_port)], cwd=ROOT, env=stack.env, capture_output=True)
    assert ready.returncode == 0, ready.stderr
    down = subprocess.run([*check, str(free_port())], cwd=ROOT, env=stack.env, capture_output=True, text=True)
    assert down.returncode == 1 and "not ready" in down.stderr


def test_the_access_log_keeps_no_api_key(stack: Stack, transactional_db: None) -> None:
    key = api_key("proxy-logged")
    assert stack.get(f"/comfy/{key}/history").status_code == 200
    assert stack.get(f"/history?token={key}").status_code == 200
    both = ("/comfy/[redacted]/history", '"GET /history"')
    # nginx writes each request's line when it ends: wait for both lines, not only the first
    wait_for(lambda: all(line in stack.access_log.read_text() for line in both), 10, "the access log")
    logged = stack.access_log.read_text()
    assert key.split(".")[0] not in logged and key not in logged
    assert '"GET /history"' in logged

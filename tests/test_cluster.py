"""`make cluster`: nginx with the shipped configuration in front of two gunicorns and two daphnes,
three gpu_workers, a dispatcher, sharing the database, Redis and an S3 bucket, exactly as separate
machines would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
import requests
from websockets.sync.client import connect

from accounts.services import api_key_create
from billing.credits import account_for
from generations.models import Generation
from generations.workers import heartbeat_key
from scripts.private_redis import free_port, start_redis
from tests.conftest import ROOT, EventStream, child_env, make_user, wait_for
from tests.s3_support import BUCKET, CREDENTIALS, lowercase, s3_env

pytestmark = pytest.mark.live
WORKERS = [f"127.0.0.1-gpu-{n}" for n in (1, 2, 3)]


@pytest.fixture
def cluster(s3_server: str, transactional_db: None, tmp_path: Path) -> Iterator[dict[str, Any]]:
    proxy_port, https_port, redis_port = free_port(), free_port(), free_port()
    web_ports, ws_ports = [free_port(), free_port()], [free_port(), free_port()]
    # Its own Redis, as a separate deployment has: the session's live worker must not take its jobs.
    redis_server = start_redis(redis_port, tmp_path / "redis", persist=False)
    cluster_redis = redis.Redis(port=redis_port)
    env = {**child_env(), **s3_env(s3_server), "PORT": str(proxy_port), "ATELIER_DATA_DIR": str(tmp_path)}
    env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    env["ATELIER_WEB_PORTS"] = ",".join(map(str, web_ports))
    env["ATELIER_WS_PORTS"] = ",".join(map(str, ws_ports))
    env["ATELIER_HTTPS_PORT"] = str(https_port)
    process = subprocess.Popen(
        [sys.executable, "scripts/cluster.py"], cwd=ROOT, env=env, start_new_session=True
    )
    proxy = f"http://127.0.0.1:{proxy_port}"
    try:
        wait_for(lambda: requests.get(proxy + "/healthz", timeout=2).status_code == 200, 120, "the proxy")
        for port in web_ports + ws_ports:
            wait_for(lambda: port_open(f"127.0.0.1:{port}"), 60, "a web process")  # noqa: B023
        wait_for(
            lambda: all(cluster_redis.exists(heartbeat_key(n)) for n in WORKERS), 120, "three gpu_workers"
        )
        state = json.loads((tmp_path / "cluster.json").read_text())
        webs = [f"127.0.0.1:{p}" for p in web_ports]
        sockets = [f"127.0.0.1:{p}" for p in ws_ports]
        pids = [state["web_pids"][0], state["ws_pids"][0]]
        tls = {
            "https": f"https://127.0.0.1:{https_port}",
            "certificate": tmp_path / "nginx/tls/localhost.crt",
        }
        yield {"proxy": proxy, "webs": webs, "sockets": sockets, "first_pids": pids, "s3": s3_server, **tls}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        redis_server.terminate()
        redis_server.wait()


def api_key() -> str:
    user = make_user("cluster-user")
    account_for(user)
    _, key = api_key_create(user=user, name="cluster")
    return key


def events_from(host: str, key: str) -> EventStream:
    headers = {"Authorization": f"Bearer {key}"}
    stream = EventStream(connect(f"ws://{host}/ws/v1/events/", additional_headers=headers))
    assert stream.next()["type"] == "snapshot"
    return stream


def submit(base: str, key: str, prompt: str) -> str:
    body = {"prompt": prompt, "width": 64, "height": 64, "steps": 4}
    headers = {"Authorization": f"Bearer {key}"}
    response = requests.post(f"{base}/api/v1/generations", json=body, headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_the_cluster_shares_events_work_and_media_and_survives_a_lost_web_process(
    cluster: dict[str, Any],
) -> None:
    key = api_key()
    web1, _ = cluster["webs"]
    socket1, socket2 = cluster["sockets"]

    # Listening on one daphne, submitting through one gunicorn: events cross machines via Redis.
    with events_from(socket2, key) as stream:
        generation_id = submit(f"http://{web1}", key, "two machines, one job")
        seen = stream.until(generation_id, {"generation.succeeded", "generation.failed"}, timeout=120)
    assert next(e["type"] for e in seen if e["type"] != "generation.queued") == "generation.started"
    assert seen[-1]["type"] == "generation.succeeded"
    generation = Generation.objects.get(pk=generation_id)
    assert generation.worker_name in WORKERS
    s3 = boto3.client("s3", endpoint_url=cluster["s3"], **lowercase(CREDENTIALS))
    assert s3.head_object(Bucket=BUCKET, Key=generation.images.get().original)["ContentLength"] > 0

    # The same site over TLS, with the cluster's own certificate for localhost.
    over_tls = requests.get(f"{cluster['https']}/healthz", verify=str(cluster["certificate"]), timeout=10)
    assert over_tls.status_code == 200

    # A gunicorn and a daphne die; clients come back through nginx and are served by the others.
    for pid in cluster["first_pids"]:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not port_open(web1) and not port_open(socket1), 30, "web 1 and socket 1 to be gone")
    proxy_host = cluster["proxy"].removeprefix("http://")
    for attempt in range(3):  # round robin: every new connection must land on a survivor
        with events_from(proxy_host, key) as stream:
            generation_id = submit(cluster["proxy"], key, f"after the loss {attempt}")
            seen = stream.until(generation_id, {"generation.succeeded", "generation.failed"}, timeout=120)
        assert seen[-1]["type"] == "generation.succeeded"


def port_open(host: str) -> bool:
    try:
        requests.get(f"http://{host}/healthz", timeout=1)
        return True
    except requests.ConnectionError:
        return False

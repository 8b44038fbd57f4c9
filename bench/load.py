"""Load on the cluster: sustained API submissions while thousands of WebSocket clients listen.

    .venv/bin/python bench/load.py [--clients 2000] [--users 100] [--seconds 30] [--rate 10]

Starts `scripts/cluster.py` (nginx in front of two gunicorns and two daphnes, three gpu_workers, a
dispatcher) on PostgreSQL and Redis (DATABASE_URL / REDIS_URL; defaults: this machine's servers,
database `atelier_load`, Redis db 12). Opens `--clients` WebSocket connections through the proxy, spread
over `--users` accounts, then submits `--rate` small generations per second for `--seconds`
through the proxy. Every client of a user receives that user's events (queued, started, progress
with previews, succeeded). Prints requests/s and request latency p50/p99, events delivered and the
delivery latency (arrival minus the event's `at`, stamped by the process that built it) p50/p99.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/, whose queue.py would shadow the standard library's queue

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from scripts.private_redis import free_port  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=10, help="submissions per second")
    args = parser.parse_args()

    env = dict(os.environ)
    env.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/atelier_load")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/12")
    work = Path(tempfile.mkdtemp(prefix="atelier-load-"))
    proxy_port = free_port()
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        ATELIER_DATA_DIR=str(work),
        MEDIA_ROOT=str(work / "media"),
        PORT=str(proxy_port),
        ATELIER_WEB_PORTS=f"{free_port()},{free_port()}",
        ATELIER_WS_PORTS=f"{free_port()},{free_port()}",
        ATELIER_HTTPS_PORT=str(free_port()),
        DATABASE_POOL_MAX="8",
        LOG_LEVEL="WARNING",
    )
    os.environ.update(env)
    from bench.queue import create_database, prepare

    create_database(env["DATABASE_URL"])
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    import django

    django.setup()
    keys = prepare(args.users, prefix="load-", max_concurrent=50)
    cluster = subprocess.Popen(
        [sys.executable, "scripts/cluster.py"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(proxy_port)
        result = asyncio.run(run(args, keys, f"127.0.0.1:{proxy_port}"))
    finally:
        os.killpg(cluster.pid, signal.SIGTERM)
        cluster.wait(timeout=60)
    report(args, result)


def wait_ready(port: int) -> None:
    import requests

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            body = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
            if body["status"] == "ready":
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError("the cluster did not become ready")


async def run(args: argparse.Namespace, keys: list[str], host: str) -> dict[str, object]:
    from websockets.asyncio.client import connect

    delivery: list[float] = []
    events = 0
    stop = asyncio.Event()
    connected = 0

    async def listen(key: str) -> None:
        nonlocal events, connected
        headers = {"Authorization": f"Bearer {key}"}
        async with connect(f"ws://{host}/ws/v1/events/", additional_headers=headers, open_timeout=120) as ws:
            await ws.recv()  # the snapshot
            connected += 1
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=1)
                except TimeoutError:
                    continue
                arrived = time.time()
                event = json.loads(raw)
                if "at" in event and event.get("type", "").startswith("generation."):
                    sent = datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()
                    delivery.append(arrived - sent)
                    events += 1

    listeners = []
    for index in range(args.clients):
        listeners.append(asyncio.create_task(listen(keys[index % len(keys)])))
        if index % 100 == 99:
            await asyncio.sleep(0.2)  # open them in waves, as real clients arrive
    deadline = time.monotonic() + 180
    while connected < args.clients and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    held = connected
    latencies, statuses = await submit(args, keys, host)
    await asyncio.sleep(5)  # let the last jobs finish and their events arrive
    stop.set()
    await asyncio.gather(*listeners, return_exceptions=True)
    return {
        "held": held,
        "latencies": latencies,
        "statuses": statuses,
        "delivery": delivery,
        "events": events,
    }


async def submit(args: argparse.Namespace, keys: list[str], host: str) -> tuple[list[float], dict[int, int]]:
    """Open-loop: one request every 1/rate seconds on keep-alive connections, whatever the answers."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    body = json.dumps({"prompt": "load", "width": 64, "height": 64, "steps": 4}).encode()

    async def one(key: str) -> None:
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection(*host.split(":"))
        request = (
            f"POST /api/v1/generations HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()
        writer.close()
        latencies.append(time.perf_counter() - started)
        status = int(status_line.split()[1]) if status_line else 0
        statuses[status] = statuses.get(status, 0) + 1

    tasks = []
    count = int(args.seconds * args.rate)
    begin = time.perf_counter()
    for index in range(count):
        delay = begin + index / args.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(keys[index % len(keys)])))
    await asyncio.gather(*tasks, return_exceptions=True)
    return latencies, statuses


def report(args: argparse.Namespace, result: dict[str, object]) -> None:
    latencies = list(result["latencies"])  # type: ignore[call-overload]
    delivery = list(result["delivery"])  # type: ignore[call-overload]

    def ms(values: list[float], fraction: float) -> str:
        return f"{percentile(values, fraction) * 1000:.1f} ms"

    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  machine: {machine}")
    print("cluster: nginx, 2 gunicorn + 2 daphne, 3 gpu_workers, dispatcher, PostgreSQL, Redis")
    print(f"WebSocket clients held: {result['held']} of {args.clients} ({args.users} users)")
    rate = len(latencies) / args.seconds
    print(f"submissions: {len(latencies)} in {args.seconds:.0f} s = {rate:.1f} req/s, {result['statuses']}")
    print(f"request latency: p50 {ms(latencies, 0.5)}, p99 {ms(latencies, 0.99)}")
    print(f"events delivered: {result['events']}; delivery p50 {ms(delivery, 0.5)}, p99 {ms(delivery, 0.99)}")


if __name__ == "__main__":
    main()

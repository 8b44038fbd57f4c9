"""The floor under a job's round trip (issue 16): what each layer of the web stack costs per request
before any of Atelier's own work, beside ComfyUI's whole round trip, in one run.

    .venv/bin/python bench/floor.py [--n 2000] [--round-trips 200]

A round trip of bench/latency.py is three HTTP requests (POST the job, GET the generation, GET the
image) and, in Atelier, four socket events (queued, started, progress, succeeded), plus the worker.
Measured here, each on one kept-alive connection, one request at a time: the wall time (p50) and
the server's CPU per request of

- an ASGI app that does nothing (bench/floor_apps.py ``raw``), under daphne and, when installed,
  uvicorn: the ASGI server alone;
- Django with no middleware and one view, through Atelier's ASGI handler (``bare_django``): what
  Django adds before Atelier's middleware, authentication and views;
- Atelier's own GET of a finished generation and of its image (the embedded layout of `make run`),
  and the web tier's CPU per socket event delivered (events published by a separate process);
- ComfyUI's GET /history/<id>, and ComfyUI's and Atelier's whole 64x64 round trip (CPU of every
  server process per round trip).

The last lines add up the floor: the web CPU that three requests through bare Django and four
socket events cost with nothing of Atelier's in them, against ComfyUI's CPU for its whole round trip.
ComfyUI is set up as bench/latency.py's docstring says; without it those lines are left out.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/, whose queue.py would shadow the standard library's queue

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from bench.latency import Atelier, embedded  # noqa: E402
from bench.roundtrip import ComfyUI, Http, comfyui_paths, cpu_seconds, image_path, percentile  # noqa: E402
from bench.scratch import scratch_env  # noqa: E402
from scripts.private_redis import free_port, start_redis  # noqa: E402

Row = tuple[str, str, float, float]  # what, server, p50 ms, server CPU ms per request


def server_command(server: str, app: str, port: int) -> list[str]:
    if server == "uvicorn":
        quiet = ["--no-access-log", "--lifespan", "off", "--log-level", "warning"]
        return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), *quiet]
    return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]


def timed(http: Http, path: str, pids: list[int], n: int) -> tuple[float, float]:
    """p50 wall ms and server CPU ms per request of ``n`` GETs of ``path`` (after a warm-up)."""
    for _ in range(50):
        http.request("GET", path)
    before = cpu_seconds(pids)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        http.request("GET", path)
        times.append(time.perf_counter() - start)
    return percentile(times, 0.5) * 1000, (cpu_seconds(pids) - before) * 1000 / n


def wait_answering(port: int, path: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            Http(port).request("GET", path)
            return
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def floor_servers(work: Path, n: int) -> list[Row]:
    """The empty ASGI app and bare Django under each ASGI server installed here."""
    redis_port = free_port()
    redis = start_redis(redis_port, work / "redis", persist=False)
    env = {**scratch_env(work, redis_port), "DJANGO_SETTINGS_MODULE": "bench.floor_settings"}
    servers = ["daphne"] + (["uvicorn"] if importlib.util.find_spec("uvicorn") else [])
    apps = [
        ("ASGI app doing nothing", "bench.floor_apps:raw", "/"),
        ("Django, no middleware", "bench.floor_apps:bare_django", "/empty"),
    ]
    try:
        rows = [
            serve_and_time(what, server, app, path, env, n) for what, app, path in apps for server in servers
        ]
    finally:
        redis.terminate()
        redis.wait()
    return rows


def serve_and_time(what: str, server: str, app: str, path: str, env: dict[str, str], n: int) -> Row:
    port = free_port()
    process = subprocess.Popen(
        server_command(server, app, port),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_answering(port, path)
        p50, cpu = timed(Http(port), path, [process.pid], n)
        return what, server, p50, cpu
    finally:
        process.terminate()
        process.wait()


def publish_code(count: int) -> str:
    """Run in the scratch installation: ``count`` progress events to the bench user's group, one
    at a time, through the publisher the worker uses."""
    return (
        "import time\n"
        "from accounts.models import User\n"
        "from generations.publisher import EventPublisher\n"
        "user = User.objects.order_by('-id').first()\n"
        "publisher = EventPublisher()\n"
        "event = {'type': 'generation.progress', 'id': 'floor', 'status': 'running', 'steps': 1}\n"
        f"for step in range({count}):\n"
        "    publisher.publish(user.id, dict(event, step=step))\n"
        "    time.sleep(0.002)\n"
        "publisher.flush()\n"
        "publisher.close()\n"
    )


def atelier_rows(work: Path, n: int, round_trips: int) -> list[Row]:
    """Atelier's GETs and socket events (embedded layout), and its CPU per whole round trip."""
    target, helpers = embedded(work)
    rows: list[Row] = []
    try:
        target.start()
        with target.session() as round_trip:
            for _ in range(20):
                round_trip(64)
            groups = target.cpu_groups()
            every = [pid for pids in groups.values() for pid in pids]
            before = cpu_seconds(every)
            samples = [round_trip(64) for _ in range(round_trips)]
            whole = (cpu_seconds(every) - before) * 1000 / round_trips
            p50 = percentile([sum(s.values()) for s in samples], 0.5) * 1000
        rows.append(("Atelier whole 64x64 round trip", "daphne+worker", p50, whole))
        web = groups["web"]
        http = Http(target.http_port, target.headers())
        generation = http.json("GET", "/api/v1/generations?limit=1")["data"][0]
        rows.append(("Atelier GET generation", "daphne", *timed(http, generation["url"], web, n)))
        image = image_path(generation["images"][0]["url"])
        rows.append(("Atelier GET image", "daphne", *timed(http, image, web, n)))
        rows.append(("Atelier socket event", "daphne", 0.0, event_cost(target, n)))
    finally:
        target.stop()
        for helper in helpers:
            helper.terminate()
            helper.wait()
    return rows


def event_cost(target: Atelier, count: int) -> float:
    """The web tier's CPU ms per event delivered to one socket."""
    from websockets.sync.client import connect

    target.stop_worker()
    web = target.cpu_groups()["web"]
    url = f"ws://127.0.0.1:{target.ws_port}/ws/v1/events/"
    with connect(url, additional_headers=target.headers(), max_size=None) as ws:
        ws.recv(timeout=30)  # the snapshot
        received: list[str | bytes] = []

        def read() -> None:
            while len(received) < count:
                received.append(ws.recv(timeout=60))

        reader = threading.Thread(target=read)
        reader.start()
        before = cpu_seconds(web)
        target.manage("shell", "-c", publish_code(count))
        reader.join()
        return (cpu_seconds(web) - before) * 1000 / count


def comfyui_rows(work: Path, n: int, round_trips: int) -> tuple[list[Row], float] | None:
    found = comfyui_paths(None, None)
    if found is None:
        print("ComfyUI not found (COMFYUI_DIR): its lines are left out")
        return None
    comfy = ComfyUI(found[0], found[1], work, free_port())
    try:
        comfy.start()
        pids = comfy.cpu_groups()["server"]
        with comfy.session() as round_trip:
            for _ in range(20):
                round_trip(64)
            before = cpu_seconds(pids)
            samples = [round_trip(64) for _ in range(round_trips)]
            whole = (cpu_seconds(pids) - before) * 1000 / round_trips
        p50 = percentile([sum(s.values()) for s in samples], 0.5) * 1000
        http = Http(comfy.port)
        prompt_id = next(iter(http.json("GET", "/history?max_items=1")))
        rows = [
            ("ComfyUI whole 64x64 round trip", "aiohttp", p50, whole),
            ("ComfyUI GET /history/<id>", "aiohttp", *timed(http, f"/history/{prompt_id}", pids, n)),
        ]
        return rows, whole
    finally:
        comfy.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000, help="requests (and events) per line")
    parser.add_argument("--round-trips", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="atelier-floor-"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; load average {os.getloadavg()}")
    print(f"started {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    rows = floor_servers(work / "floor", args.n)
    rows += atelier_rows(work / "atelier", args.n, args.round_trips)
    comfy = comfyui_rows(work / "comfyui", args.n, args.round_trips)
    if comfy is not None:
        rows += comfy[0]
    print(f"\n{'what':34} {'server':14} {'p50 ms':>8} {'server CPU ms':>14}")
    for what, server, p50, cpu in rows:
        print(f"{what:34} {server:14} {p50:8.2f} {cpu:14.3f}")
    floor = summed(rows, "daphne")
    print(f"\nweb tier's floor (daphne): 3 bare Django requests + 4 socket events = {floor:.1f} ms CPU")
    if comfy is not None:
        print(f"ComfyUI's whole 64x64 round trip: {comfy[1]:.1f} ms CPU; ratio {floor / comfy[1]:.2f}")
    print(f"\nfinished {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average {os.getloadavg()}")


def summed(rows: list[Row], server: str) -> float:
    def cpu(what: str) -> float:
        return next(row[3] for row in rows if row[0] == what and row[1] == server)

    return 3 * cpu("Django, no middleware") + 4 * cpu("Atelier socket event")


if __name__ == "__main__":
    main()

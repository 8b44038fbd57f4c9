"""A job's round trip, Atelier beside ComfyUI (issue 16).

    .venv/bin/python bench/latency.py [--n 100] [--submissions 400] [--drain 400]
        [--layouts embedded,production] [--comfyui DIR] [--comfyui-python PATH]
        [--only drain] [--noop-batch 64]

What a new user measures: a model-free job (Atelier's `noop` family; ComfyUI's EmptyImage ->
SaveImage), one at a time through the public API — POST, the terminal WebSocket event, GET the
result, GET the image bytes — at 64x64 and 512x512 (p50/p95 and the median of each phase);
POSTs per second from 1 client and from 8 threads (64x64); trivial jobs one worker drains per
second. Atelier runs in its two layouts, each built from scratch by this script:

- embedded: what `make run` starts — daphne for HTTP and WebSockets, SQLite, a private Redis;
- production: gunicorn (config/gunicorn.py, production settings) for HTTP, daphne for /ws/,
  PostgreSQL and Redis (DATABASE_URL / REDIS_URL; defaults: this machine's servers, a scratch
  database `atelier_latency` made here and Redis db 10, both emptied first). Skipped, and said so,
  when they are not there.

The API key's user gets the default plan with caps and the request rate lifted (the bench
measures the machinery, not the limits). For the drain figure the worker is stopped while the
submissions are made, then started: jobs/s between its first and last finish.

ComfyUI is the reference server, set up outside this repository (its code is GPL: none of it
enters Atelier; the bench only talks to it over HTTP and WebSocket):

    fetch github:Comfy-Org/ComfyUI, then
    mkdir -p /work/scratch/comfyui && git --git-dir=<mirror> archive HEAD | tar -x -C /work/scratch/comfyui
    python3 -m venv /work/scratch/comfyui-venv
    /work/scratch/comfyui-venv/bin/pip install torch==2.13.0 torchvision==0.28.0 torchsde numpy \
        einops transformers tokenizers sentencepiece safetensors aiohttp yarl pyyaml Pillow scipy \
        tqdm psutil alembic SQLAlchemy av kornia spandrel pydantic pydantic-settings requests \
        comfyui-frontend-package==1.27.10 comfyui-workflow-templates==0.1.95 comfyui-embedded-docs==0.2.6

(On this machine's local CPU torch build, torchvision's compiled ops do not load: in the scratch
venv, `torchvision/__init__.py`'s import of `_meta_registrations` is wrapped in try/except
RuntimeError. EmptyImage and SaveImage do not use torchvision.) `--comfyui` (or COMFYUI_DIR) is the
checkout, `--comfyui-python` (or COMFYUI_PYTHON) its venv's python; the defaults are the paths
above. ComfyUI runs with `--cpu --disable-all-custom-nodes` and an in-memory database. Without it the
bench measures Atelier alone and says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/, whose queue.py would shadow the standard library's queue

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

from bench.latency_report import SIZES, print_ratios, print_result  # noqa: E402
from bench.roundtrip import (  # noqa: E402
    ComfyUI,
    Http,
    comfyui_paths,
    cpu_seconds,
    image_path,
    submission_rate,
    summarize,
)
from bench.scratch import scratch_env, wait_serving  # noqa: E402
from scripts.private_redis import free_port, start_redis  # noqa: E402


def noop_model(max_batch: int) -> str:
    """Trivial jobs batch by `--noop-batch` (the default 4 suits a denoiser's memory, not a flat
    fill; 64 since the batch finish, 16 before)."""
    spec = {"name": "noop", "path": "-", "pool": "bench", "family": "noop", "max_side": 512}
    return json.dumps([{**spec, "max_batch": max_batch}])


NOOP_MODEL = noop_model(64)
PROXIED = {"X-Forwarded-Proto": "https"}  # what the TLS proxy adds in production

# Run in the scratch installation: a funded user whose default plan has caps and rate lifted.
PREPARE = """
from bench.queue import prepare
print("KEY=" + prepare(1, prefix="latency-", max_concurrent=1_000_000)[0])
"""
# Waits until the drain's jobs are finished, then prints how many and how fast.
DRAIN_STATS = """
import time
from generations.models import Generation
jobs = Generation.objects.filter(prompt="drain")
while jobs.exclude(status__in=["succeeded", "failed", "canceled"]).exists():
    time.sleep(0.2)
times = sorted(jobs.filter(status="succeeded").values_list("finished_at", flat=True))
span = (times[-1] - times[0]).total_seconds() if len(times) > 1 else 0.0
print("DRAIN=%d %.6f" % (len(times), span))
"""


class Atelier:
    def __init__(self, layout: str, env: dict[str, str], http_port: int, ws_port: int) -> None:
        self.name = f"Atelier ({layout})"
        self.layout, self.env = layout, env
        self.http_port, self.ws_port = http_port, ws_port
        self.processes: list[subprocess.Popen[bytes]] = []
        self.worker: subprocess.Popen[bytes] | None = None
        self.key = ""
        self.seed = 0
        self.drain_cpu = 0.0

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True
        )
        return done.stdout.decode()

    def start(self) -> None:
        self.manage("migrate", "-v", "0")
        self.key = next(
            line[4:] for line in self.manage("shell", "-c", PREPARE).splitlines() if line.startswith("KEY=")
        )
        daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.ws_port)]
        commands = [[*daphne, "config.asgi:application"]]
        if self.http_port != self.ws_port:
            gunicorn = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py"]
            commands.append([*gunicorn, "-b", f"127.0.0.1:{self.http_port}"])
        for command in commands:
            quiet = subprocess.DEVNULL
            self.processes.append(
                subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=quiet, stderr=quiet)
            )
        self.start_worker()
        self.wait_ready()

    def start_worker(self) -> None:
        command = [sys.executable, "manage.py", "gpu_worker", "--pools", "bench"]
        log = open(Path(self.env["ATELIER_DATA_DIR"]) / "worker.log", "ab")  # noqa: SIM115
        self.worker = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=log)

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.terminate()
            self.worker.wait()
            self.worker = None

    def stop(self) -> None:
        self.stop_worker()
        for process in self.processes:
            process.terminate()
            process.wait()

    def cpu_groups(self) -> dict[str, list[int]]:
        """The processes whose CPU a round trip is charged to, by role."""
        worker = [self.worker.pid] if self.worker is not None else []
        return {"worker": worker, "web": [process.pid for process in self.processes]}

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **PROXIED}

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                Http(self.http_port, self.headers()).request("GET", "/api/v1/models")
                Http(self.ws_port, PROXIED).request("GET", "/accounts/login/")
                # The worker is up when one job made now goes through.
                with self.session() as round_trip:
                    round_trip(64)
                return
            except (OSError, RuntimeError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def body(self, side: int, prompt: str = "latency") -> dict[str, Any]:
        self.seed += 1
        return {
            "prompt": prompt,
            "model": "noop",
            "width": side,
            "height": side,
            "steps": 1,
            "seed": self.seed,
        }

    @contextmanager
    def session(self) -> Iterator[Callable[[int], dict[str, float]]]:
        from websockets.sync.client import connect

        http = Http(self.http_port, self.headers())
        url = f"ws://127.0.0.1:{self.ws_port}/ws/v1/events/"
        with connect(url, additional_headers=self.headers(), max_size=None) as ws:
            json.loads(ws.recv(timeout=30))  # the snapshot

            def round_trip(side: int) -> dict[str, float]:
                t0 = time.perf_counter()
                generation = http.json("POST", "/api/v1/generations", self.body(side), expect=202)
                t1 = time.perf_counter()
                while True:
                    event = json.loads(ws.recv(timeout=30))
                    if event.get("id") == generation["id"] and event.get("type") in TERMINAL:
                        break
                if event["type"] != "generation.succeeded":
                    raise RuntimeError(f"generation ended {event}")
                t2 = time.perf_counter()
                done = http.json("GET", f"/api/v1/generations/{generation['id']}")
                t3 = time.perf_counter()
                http.request("GET", image_path(done["images"][0]["url"]))
                t4 = time.perf_counter()
                return {"post": t1 - t0, "run": t2 - t1, "get": t3 - t2, "image": t4 - t3}

            yield round_trip

    def submitter(self, prompt: str = "submit") -> Callable[[int], None]:
        http = Http(self.http_port, self.headers())

        def submit(index: int) -> None:
            http.request("POST", "/api/v1/generations", self.body(64, prompt), expect=202)

        return submit

    def drain_rate(self, total: int) -> tuple[float, int]:
        self.stop_worker()
        submit = self.submitter("drain")
        for index in range(total):
            submit(index)
        self.start_worker()
        wait_serving(self.env["REDIS_URL"])
        assert self.worker is not None
        before = cpu_seconds([self.worker.pid])
        count, span = self.manage("shell", "-c", DRAIN_STATS).split("DRAIN=")[1].split()
        self.drain_cpu = (cpu_seconds([self.worker.pid]) - before) * 1000 / max(1, int(count))
        return (int(count) - 1) / float(span) if float(span) else 0.0, int(count)


TERMINAL = ("generation.succeeded", "generation.failed", "generation.canceled")


def embedded(work: Path) -> tuple[Atelier, list[subprocess.Popen[bytes]]]:
    work.mkdir(parents=True, exist_ok=True)
    redis_port = free_port()
    redis = start_redis(redis_port, work / "redis", persist=False)
    env = scratch_env(work, redis_port, ATELIER_MODELS=NOOP_MODEL)
    port = free_port()
    return Atelier("embedded", env, port, port), [redis]


def production(work: Path) -> Atelier | None:
    database = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/atelier_latency")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/10")
    try:
        import psycopg
        import redis
        from psycopg import sql

        redis.Redis.from_url(redis_url).flushdb()
        base, _, name = database.rpartition("/")
        with psycopg.connect(base + "/postgres", autocommit=True, connect_timeout=3) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except Exception as exc:  # no server here: the embedded layout is still measured
        print(f"production layout skipped: PostgreSQL or Redis unavailable ({exc})")
        return None
    work.mkdir(parents=True, exist_ok=True)
    env = scratch_env(
        work,
        0,
        ATELIER_MODELS=NOOP_MODEL,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-only",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_POOL_MAX="0",
        DATABASE_CONN_MAX_AGE="600",
    )
    env.update(DATABASE_URL=database, REDIS_URL=redis_url)
    return Atelier("production", env, free_port(), free_port())


def measure(target: Any, args: argparse.Namespace) -> dict[Any, Any]:
    if args.only == "drain":
        return measure_drain(target, args)
    result: dict[Any, Any] = {}
    with target.session() as round_trip:
        for side in SIZES:
            for _ in range(10):  # warm-up
                round_trip(side)
            groups = target.cpu_groups()
            before = {role: cpu_seconds(pids) for role, pids in groups.items()}
            result[side] = summarize([round_trip(side) for _ in range(args.n)])
            for role, pids in groups.items():
                result[side][f"cpu {role}"] = (cpu_seconds(pids) - before[role]) * 1000 / args.n
    result["submit1"] = submission_rate(target.submitter, args.submissions, 1)
    result["submit8"] = submission_rate(target.submitter, args.submissions, 8)
    result["drain"], result["drained"] = target.drain_rate(args.drain)
    result["drain cpu"] = getattr(target, "drain_cpu", 0.0)
    print_result(target.name, result)
    return result


def measure_drain(target: Any, args: argparse.Namespace) -> dict[Any, Any]:
    """Only the drain: jobs/s one worker drains and its CPU per drained job (`--only drain`)."""
    drain, drained = target.drain_rate(args.drain)
    print(f"\n{target.name}\n  one worker drains {drain:.0f} trivial jobs/s ({drained} jobs)")
    if getattr(target, "drain_cpu", 0.0):
        print(f"    worker CPU per drained job: {target.drain_cpu:.2f} ms")
    return {"drain": drain, "drained": drained, "drain cpu": getattr(target, "drain_cpu", 0.0)}


def targets(args: argparse.Namespace, work: Path) -> Iterator[tuple[Any, list[subprocess.Popen[bytes]]]]:
    """ComfyUI when it is set up, then each layout whose servers are there, each with its helpers."""
    found = comfyui_paths(args.comfyui, args.comfyui_python)
    if found is None:
        print("ComfyUI not found (--comfyui / COMFYUI_DIR): measuring Atelier alone")
    else:
        yield ComfyUI(found[0], found[1], work / "comfyui", free_port()), []
    for layout in args.layouts.split(","):
        if layout == "embedded":
            yield embedded(work / layout)
        elif (target := production(work / layout)) is not None:
            yield target, []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100, help="timed round trips per size")
    parser.add_argument("--submissions", type=int, default=400)
    parser.add_argument("--drain", type=int, default=400)
    parser.add_argument("--layouts", default="embedded,production")
    parser.add_argument("--comfyui", default=None, help="ComfyUI checkout (default $COMFYUI_DIR)")
    parser.add_argument("--comfyui-python", default=None)
    parser.add_argument("--only", choices=["drain"], default=None, help="measure only this part")
    parser.add_argument("--noop-batch", type=int, default=64, help="the noop model's max_batch")
    args = parser.parse_args()
    global NOOP_MODEL
    NOOP_MODEL = noop_model(args.noop_batch)
    work = Path(tempfile.mkdtemp(prefix="atelier-latency-"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; load average {os.getloadavg()}")
    print(f"started {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    results: dict[str, dict[Any, Any]] = {}
    for target, helpers in targets(args, work):
        try:
            target.start()
            results[target.name] = measure(target, args)
        finally:
            target.stop()
            for helper in helpers:
                helper.terminate()
                helper.wait()
    if args.only is None:
        print_ratios(results)
    elif "ComfyUI" in results and results["ComfyUI"]["drain"]:
        for name, result in results.items():
            print(f"{name}: drain / ComfyUI's {result['drain'] / results['ComfyUI']['drain']:.2f}")
    print(f"\nfinished {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()

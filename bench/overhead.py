"""Service overhead: N generations through the whole service against the same pipeline in a loop.

Service path: API -> RQ -> gpu_worker (real process) -> storage -> WebSocket event. Baseline: the
same pipeline object type, called in a plain loop in this process, writing the same PNG and WebP
files. Both run one after the other in one run, alternating, on the same machine.

    .venv/bin/python bench/overhead.py [--n 20] [--size 512] [--steps 20] [--rounds 2]

Prints the efficiency ratio (loop time / service time); 1.0 means no overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/, whose queue.py would shadow the standard library's queue

from bench.scratch import scratch_env, serving  # noqa: E402
from scripts.private_redis import free_port, start_redis  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="atelier-bench-"))
    redis_port = free_port()
    redis = start_redis(redis_port, work / "redis", persist=False)
    env = scratch_env(work, redis_port)
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)

    import django

    django.setup()
    from accounts.models import User
    from accounts.services import api_key_create

    user = User.objects.create_user("bench")
    _, key = api_key_create(user=user)

    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "gpu_worker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    try:
        service = Service(f"127.0.0.1:{port}", key, args)
        service.wait_ready()
        loop = PlainLoop(work / "loop", args)
        service.run(1)  # warm-up: first request, first job
        loop.run(1)
        loop_times, service_times = [], []
        for _ in range(args.rounds):
            loop_times.append(loop.run(args.n))
            service_times.append(service.run(args.n))
        report(args, sum(loop_times), sum(service_times), loop_times, service_times)
    finally:
        for process in (worker, web, redis):
            process.terminate()
            process.wait()


class PlainLoop:
    def __init__(self, out: Path, args: argparse.Namespace) -> None:
        from generations.registry import default_model
        from gpu_worker.cache import ModelCache

        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.model = ModelCache().get(default_model().path)
        self.seed = 0

    def run(self, n: int) -> float:
        from generations.storage import save_content
        from generations.thumbnails import webp_thumbnail
        from gpu_worker.encoders import png_with_parameters
        from gpu_worker.model import RenderSpec
        from gpu_worker.pipeline import render

        start = time.perf_counter()
        for _ in range(n):
            self.seed += 1
            spec = RenderSpec(
                prompt="a lighthouse at dusk",
                width=self.args.size,
                height=self.args.size,
                steps=self.args.steps,
                seeds=[self.seed],
            )
            image = render(self.model, spec)[0]
            save_content("bench-loop", png_with_parameters(image, {"seed": self.seed}), "png")
            save_content("bench-loop-thumbs", webp_thumbnail(image), "webp")
        return time.perf_counter() - start


class Service:
    def __init__(self, host: str, key: str, args: argparse.Namespace) -> None:
        self.host, self.key, self.args = host, key, args
        self.seed = 10_000

    def wait_ready(self) -> None:
        import redis
        import requests

        connection = redis.Redis.from_url(os.environ["REDIS_URL"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                up = requests.get(f"http://{self.host}/accounts/login/", timeout=2).status_code == 200
            except requests.ConnectionError:
                up = False
            if up and serving(connection):
                return
            time.sleep(0.2)
        raise TimeoutError("web or worker did not start")

    def run(self, n: int) -> float:
        import requests
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {self.key}"}
        with connect(f"ws://{self.host}/ws/v1/events/", additional_headers=headers) as ws:
            json.loads(ws.recv())  # snapshot
            start = time.perf_counter()
            pending = set()
            for _ in range(n):
                self.seed += 1
                body = {
                    "prompt": "a lighthouse at dusk",
                    "width": self.args.size,
                    "height": self.args.size,
                    "steps": self.args.steps,
                    "seed": self.seed,
                }
                response = requests.post(
                    f"http://{self.host}/api/v1/generations", json=body, headers=headers, timeout=30
                )
                response.raise_for_status()
                pending.add(response.json()["id"])
            while pending:
                event = json.loads(ws.recv(timeout=600))
                if event.get("type") in ("generation.succeeded", "generation.failed"):
                    if event["type"] == "generation.failed":
                        raise RuntimeError(f"generation failed: {event}")
                    pending.discard(event["id"])
            return time.perf_counter() - start


def report(args: argparse.Namespace, loop: float, service: float, loops: list, services: list) -> None:
    images = args.n * args.rounds
    ratio = loop / service
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, torch CPU")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"workload: {images} images, {args.size}x{args.size}, {args.steps} steps, built-in small model")
    for name, total, rounds in (("plain loop", loop, loops), ("service", service, services)):
        per_round = [round(t, 2) for t in rounds]
        print(f"{name + ':':12} {total:7.2f} s  ({total / images:.3f} s/image)  rounds {per_round}")
    verdict = "OK" if ratio >= 0.9 else "BELOW TARGET"
    print(f"efficiency (loop / service): {ratio:.3f}  target >= 0.90  {verdict}")


if __name__ == "__main__":
    main()

"""Workflows against the REST API: the same txt2img request, one job at a time, through ComfyUI's
``/prompt`` (a graph run by the workflow executor) and through ``/api/v1/generations`` (the
diffusers pipeline), alternating rounds in one run on one worker.

    .venv/bin/python bench/workflow.py [--n 5] [--size 256] [--steps 20] [--rounds 2]

Prints the ratio (REST time / workflow time); 1.0 means a workflow costs what the same request
costs through the REST API. Target >= 0.95.
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
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/, whose queue.py would shadow the standard library's queue

from bench.scratch import scratch_env, serving  # noqa: E402
from scripts.private_redis import free_port, start_redis  # noqa: E402


def graph(model: str, size: int, steps: int, seed: int) -> dict[str, Any]:
    sampler = {"seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal"}
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                **sampler,
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": model}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "bench"}},
    }


class Clients:
    def __init__(self, host: str, key: str, model: str, args: argparse.Namespace) -> None:
        self.host, self.key, self.model, self.args = host, key, model, args
        self.headers = {"Authorization": f"Bearer {self.key}"}
        self.seed = 0

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

    def rest(self, n: int) -> float:
        import requests
        from websockets.sync.client import connect

        with connect(f"ws://{self.host}/ws/v1/events/", additional_headers=self.headers) as ws:
            json.loads(ws.recv())  # snapshot
            start = time.perf_counter()
            for _ in range(n):
                self.seed += 1
                body = {
                    "prompt": "a lighthouse at dusk",
                    "width": self.args.size,
                    "height": self.args.size,
                    "steps": self.args.steps,
                    "guidance": 7.0,
                    "sampler": "euler",
                    "seed": self.seed,
                }
                url = f"http://{self.host}/api/v1/generations"
                response = requests.post(url, json=body, headers=self.headers, timeout=30)
                response.raise_for_status()
                generation_id = response.json()["id"]
                while True:
                    event = json.loads(ws.recv(timeout=600))
                    if event.get("id") != generation_id:
                        continue
                    if event["type"] == "generation.failed":
                        raise RuntimeError(f"generation failed: {event}")
                    if event["type"] == "generation.succeeded":
                        break
            return time.perf_counter() - start

    def workflow(self, n: int) -> float:
        import requests
        import websocket

        client_id = str(uuid.uuid4())
        ws = websocket.WebSocket()
        ws.connect(f"ws://{self.host}/ws?clientId={client_id}", header=[f"Authorization: Bearer {self.key}"])
        try:
            ws.recv()  # status
            start = time.perf_counter()
            for _ in range(n):
                self.seed += 1
                body = {
                    "prompt": graph(self.model, self.args.size, self.args.steps, self.seed),
                    "client_id": client_id,
                }
                response = requests.post(
                    f"http://{self.host}/prompt", json=body, headers=self.headers, timeout=30
                )
                response.raise_for_status()
                prompt_id = response.json()["prompt_id"]
                while True:
                    message = ws.recv()
                    if not isinstance(message, str):
                        continue
                    data = json.loads(message)
                    if data["type"] == "execution_error":
                        raise RuntimeError(f"workflow failed: {data}")
                    if data["type"] == "executing" and data["data"] == {
                        "node": None,
                        "display_node": None,
                        "prompt_id": prompt_id,
                    }:
                        break
            return time.perf_counter() - start
        finally:
            ws.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
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
    from billing.credits import account_for
    from billing.models import BillingAccount
    from generations.registry import default_model

    user = User.objects.create_user("bench")
    _, key = api_key_create(user=user)
    BillingAccount.objects.filter(pk=account_for(user).pk).update(balance=10**9)

    port = free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    web = subprocess.Popen(daphne, cwd=ROOT, env=env, **quiet)  # type: ignore[call-overload]
    worker = subprocess.Popen([sys.executable, "manage.py", "gpu_worker"], cwd=ROOT, env=env, **quiet)  # type: ignore[call-overload]
    try:
        clients = Clients(f"127.0.0.1:{port}", key, default_model().name, args)
        clients.wait_ready()
        clients.rest(1)  # warm-up: the model loaded, the first job of each path
        clients.workflow(1)
        rest_times, workflow_times = [], []
        for _ in range(args.rounds):
            rest_times.append(clients.rest(args.n))
            workflow_times.append(clients.workflow(args.n))
        report(args, sum(rest_times), sum(workflow_times), rest_times, workflow_times)
    finally:
        for process in (worker, web, redis):
            process.terminate()
            process.wait()


def report(
    args: argparse.Namespace, rest: float, workflow: float, rests: list[float], workflows: list[float]
) -> None:
    images = args.n * args.rounds
    ratio = rest / workflow
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, torch CPU")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"workload: {images} images each way, one at a time, "
        f"{args.size}x{args.size}, {args.steps} steps, euler"
    )
    for name, total, rounds in (("REST", rest, rests), ("/prompt", workflow, workflows)):
        per_round = [round(t, 2) for t in rounds]
        print(f"{name + ':':9} {total:7.2f} s  ({total / images:.3f} s/image)  rounds {per_round}")
    verdict = "OK" if ratio >= 0.95 else "BELOW TARGET"
    print(f"ratio (REST / workflow): {ratio:.3f}  target >= 0.95  {verdict}")


if __name__ == "__main__":
    main()

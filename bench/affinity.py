"""Model affinity: two workers, two models, mixed traffic, with affinity off and on in one run.

    .venv/bin/python bench/affinity.py [--jobs 40] [--size 128] [--steps 8]

Two real `gpu_worker` processes serve one pool with two models (two copies of the built-in model
at different paths: for the cache they are different models) and room for one hot model each
(`ATELIER_HOT_MODELS=1`, no warm tier on a CPU). `--jobs` jobs alternating between the two
models are queued at once; batching is off (`max_batch` 1) so that only routing decides what
runs where. Run once with `ATELIER_AFFINITY_WAIT=0` (plain queue order, the baseline) and once
with affinity on. Prints, for each, the model loads from disk after the jobs were queued, the
time spent loading, and the time until the last job finished.
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
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

from bench.scratch import scratch_env  # noqa: E402
from scripts.private_redis import free_port, start_redis  # noqa: E402

MODELS = ("alpha", "beta")
WORKERS = 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="atelier-bench-affinity-"))
    redis_port = free_port()
    redis = start_redis(redis_port, work / "redis", persist=False)
    paths = [work / "models" / m for m in MODELS]
    specs = [
        {"name": m, "path": str(p), "pool": "bench", "max_batch": 1}
        for m, p in zip(MODELS, paths, strict=True)
    ]
    env = scratch_env(
        work, redis_port, ATELIER_MODELS=json.dumps(specs), ATELIER_HOT_MODELS="1", ATELIER_HEARTBEAT_TTL="3"
    )
    os.environ.update(env)
    results: dict[str, Any] = {}
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        import django

        django.setup()
        from gpu_worker.tiny_model import build_tiny_model

        for path in paths:
            build_tiny_model(path)
        for label, wait in (("off (queue order)", "0"), ("on", "2")):
            results[label] = run(args, {**env, "ATELIER_AFFINITY_WAIT": wait}, work, label)
            print(f"{label}: {results[label]}", flush=True)
    finally:
        redis.terminate()
        redis.wait()
    report(args, results)


def run(args: argparse.Namespace, env: dict[str, str], work: Path, label: str) -> dict[str, Any]:
    from accounts.models import User
    from generations import queues
    from generations.models import Generation, GenerationStatus
    from generations.workers import live_worker_count

    queues.redis_client().flushdb()
    logs = [open(work / f"worker-{label[:3].strip()}-{n}.log", "w") for n in range(WORKERS)]  # noqa: SIM115
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "gpu_worker",
                "--pools",
                "bench",
                "--name",
                f"w{n}",
                "--cpu-threads",
                "1",
            ],
            cwd=ROOT,
            env=env,
            stdout=logs[n],
            stderr=subprocess.STDOUT,
        )
        for n in range(WORKERS)
    ]
    try:
        deadline = time.monotonic() + 120
        while live_worker_count("bench") < WORKERS:  # both started and done preloading
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                raise RuntimeError(f"the workers did not start; see {work}/worker-*.log")
            time.sleep(0.1)
        time.sleep(1)
        user, _ = User.objects.get_or_create(username="bench")
        rows = [
            Generation(
                user=user,
                model_name=MODELS[i % len(MODELS)],
                pool="bench",
                lane="standard",
                status=GenerationStatus.QUEUED,
                prompt="a lighthouse at dusk",
                width=args.size,
                height=args.size,
                steps=args.steps,
                guidance=7.0,
                seed=i,
            )
            for i in range(args.jobs)
        ]
        started_at = time.time()
        Generation.objects.bulk_create(rows)
        queues.enqueue_many(rows)
        ids = [row.id for row in rows]
        while Generation.objects.filter(pk__in=ids, status__in=["queued", "running"]).exists():
            if any(w.poll() is not None for w in workers):
                raise RuntimeError(f"a worker exited; see {work}/worker-*.log")
            time.sleep(0.02)
        seconds = time.time() - started_at
        if Generation.objects.filter(pk__in=ids).exclude(status="succeeded").exists():
            raise RuntimeError("some jobs did not succeed")
        events: list[dict[str, Any]] = queues.recent_model_events()
        loads = [e for e in events if e["kind"] == "disk" and float(e["at"]) >= started_at]
        per_worker = {
            name: sorted(
                Generation.objects.filter(pk__in=ids, worker_name=name).values_list("model_name", flat=True)
            )
            for name in (f"w{n}" for n in range(WORKERS))
        }
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=60)
    return {
        "jobs": args.jobs,
        "seconds": round(seconds, 2),
        "jobs_per_s": round(args.jobs / seconds, 2),
        "disk_loads": len(loads),
        "load_seconds": round(sum(float(e["seconds"]) for e in loads), 2),
        "models_per_worker": {
            name: {m: models.count(m) for m in MODELS} for name, models in per_worker.items()
        },
    }


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    print(f"\ndate: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  machine: {machine}")
    print(
        f"{WORKERS} workers, models {', '.join(MODELS)} alternating, "
        f"{args.jobs} jobs of {args.size}px and {args.steps} steps"
    )
    print("| affinity | loads from disk | seconds loading | all done in | jobs/s | jobs per worker |")
    print("|---|---|---|---|---|---|")
    for label, r in results.items():
        spread = "; ".join(f"{w}: {m}" for w, m in r["models_per_worker"].items())
        row = [label, r["disk_loads"], r["load_seconds"], f"{r['seconds']} s", r["jobs_per_s"], spread]
        print("| " + " | ".join(str(v) for v in row) + " |")
    off, on = results["off (queue order)"], results["on"]
    print(f"throughput on/off: {on['jobs_per_s'] / off['jobs_per_s']:.2f}x")


if __name__ == "__main__":
    main()

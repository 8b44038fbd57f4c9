"""A throwaway installation for a benchmark: SQLite file, media folder and data dir under `work`,
and the Redis started on `redis_port`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any


def scratch_env(work: Path, redis_port: int, **settings: str) -> dict[str, str]:
    """This process's environment pointed at the scratch installation, plus `settings`."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"sqlite:///{work / 'bench.sqlite3'}",
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        MEDIA_ROOT=str(work / "media"),
        ATELIER_DATA_DIR=str(work),
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
        **settings,
    )
    return env


def build_model(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    """The benchmark's model in `model_dir`: the random tiny one, the shipped demo model, or SD 1.5."""
    started = time.perf_counter()
    counts: dict[str, int] = {}
    if args.model == "demo":
        from demo_model.manifest import WEIGHTS

        shutil.copytree(WEIGHTS, model_dir)
    elif args.model == "tiny":
        from gpu_worker.tiny_model import build_tiny_model

        build_tiny_model(model_dir)
    else:
        from bench.sd15 import build_sd15

        counts = build_sd15(model_dir, device=args.device)
    return {"seconds": round(time.perf_counter() - started, 2), "parameters": counts}


def serving(connection: Any) -> bool:
    """A worker's job loop has started (generations.workers.serving_workers, without Django)."""
    keys = list(connection.scan_iter(match="atelier:worker:*", count=500))
    return any(raw and json.loads(raw).get("serving") for raw in (connection.mget(keys) if keys else []))


def wait_serving(redis_url: str, timeout: float = 120) -> None:
    """Until a worker's job loop has started (its models loaded: its start-up is not measured)."""
    import redis

    connection = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while not serving(connection):
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not start")
        time.sleep(0.05)

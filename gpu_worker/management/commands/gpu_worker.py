from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import redis
import torch
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from generations.queues import job_timeout
from generations.registry import known_pools, lanes_for_pools
from gpu_worker.affinity import affinity_queue_class
from gpu_worker.claim_loop import ClaimLoop
from gpu_worker.finisher import Finisher
from gpu_worker.heartbeat import Heartbeat
from gpu_worker.jobs import install_runner, run_generation
from gpu_worker.memory import MemoryBudget
from gpu_worker.runner import GenerationRunner
from gpu_worker.tiny_model import is_model_dir
from gpu_worker.workflow_jobs import node_plugin_report

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run a GPU worker: a long-lived process that keeps models loaded and runs jobs in-process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pools", default="", help="comma-separated pools to serve (default: all)")
        parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
        parser.add_argument("--name", default=None, help="worker name (default host.pid)")
        parser.add_argument(
            "--memory-mb",
            type=int,
            default=settings.ATELIER_WORKER_MEMORY_MB,
            help="memory budget in MiB (0 = none); over it a batch is split, sliced, then offloaded",
        )
        parser.add_argument(
            "--cpu-threads",
            type=int,
            default=0,
            help="torch CPU threads (0 = torch's default, one per core); 1 when workers share a host",
        )
        parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")

    def handle(self, *args: Any, **options: Any) -> None:
        known = set(known_pools())
        pools = [p.strip() for p in options["pools"].split(",") if p.strip()] or sorted(known)
        unknown = sorted(set(pools) - known)
        if not pools or unknown:
            raise CommandError(f"Unknown pools {unknown}; configured: {sorted(known)}")
        for spec in settings.ATELIER_MODELS.values():
            if spec.builtin and spec.pool in pools and not is_model_dir(Path(spec.path)):
                raise CommandError(
                    f"The built-in model's weights are missing from {spec.path}: restore them from the "
                    "repository (git checkout demo_model/weights) or retrain (manage.py train_demo_model)"
                )
        if options["cpu_threads"] > 0:
            # Several CPU-bound workers on one host each spinning a thread per core starve the
            # web processes (the load benchmark's delivery p99 went 1.1 s -> 36 ms with 1 thread).
            torch.set_num_threads(options["cpu_threads"])
        budget = MemoryBudget(options["memory_mb"] * 2**20) if options["memory_mb"] > 0 else None
        runner = GenerationRunner(device=options["device"], name=options["name"], memory_budget=budget)
        runner.preload(pools)
        plugins = node_plugin_report()
        for plugin, why in plugins["broken"].items():
            self.stderr.write(f"node plugin {plugin} skipped: {why}")
        runner.heartbeat = Heartbeat(
            runner.name,
            {
                "pools": pools,
                "device": options["device"],
                "models": runner.catalog_paths(runner.cache.paths()),
                "node_plugins": plugins,
            },
        )
        runner.finisher = Finisher()
        runner.heartbeat.start()
        runner.advertise_models()
        for event in runner.cache.events:
            self.stdout.write(f"loaded {event.path} ({event.kind}) in {event.seconds:.3f} s")
        install_runner(runner)
        connection = redis.Redis.from_url(settings.REDIS_URL)
        names = lanes_for_pools(pools)
        queue_class = affinity_queue_class(runner.name, runner.held_models)
        self.stdout.write(f"gpu_worker {runner.name} serving {', '.join(names)}")
        try:
            while True:
                loop = ClaimLoop(
                    names,
                    connection=connection,
                    queue_class=queue_class,
                    run=run_generation,
                    timeout_for=job_timeout,
                )
                loop.install_signals()
                runner.heartbeat.info["serving"] = True  # tests and benches wait for this
                runner.heartbeat.beat_quietly()
                try:
                    loop.work(burst=options["burst"])
                    return
                except redis.ConnectionError as exc:
                    # Redis went away: keep the loaded models and take jobs again once it is
                    # back. Jobs that vanished with it are re-enqueued from the DB by the dispatcher.
                    self.stderr.write(f"gpu_worker {runner.name}: Redis unavailable ({exc}); reconnecting")
                    wait_for_redis(connection)
        finally:
            runner.finisher.close()  # finish what was rendered before saying goodbye
            runner.heartbeat.stop()
            runner.publisher.close()  # sends what is left, but never waits long for a lost Redis


def wait_for_redis(connection: redis.Redis) -> None:
    delay = 0.5
    while True:
        time.sleep(delay)
        try:
            connection.ping()
            return
        except redis.ConnectionError:
            delay = min(delay * 2, 10.0)

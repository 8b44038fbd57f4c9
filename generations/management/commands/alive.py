"""`manage.py alive --worker|--dispatcher`: the liveness probe of a GPU worker's or the
dispatcher's pod. Exit 0 while the process in this pod beats in Redis, 1 (with the reason) when
its heartbeat is stale or missing, so Kubernetes restarts it.

When Redis itself cannot be reached the probe passes: restarting every worker would not bring
Redis back and would kill their running jobs; the workers reconnect on their own.
"""

from __future__ import annotations

import socket
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandError, CommandParser

from generations.liveness import dispatcher_beats, worker_beats


class Command(BaseCommand):
    help = "Liveness probe: exit 1 when this pod's worker or dispatcher no longer beats in Redis."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--worker", action="store_true", help="a gpu_worker in this pod")
        which.add_argument("--dispatcher", action="store_true", help="the dispatcher in this pod")
        parser.add_argument("--host", default="", help="the pod's host name (default: this machine's)")
        parser.add_argument("--pools", default="", help="the worker's pools (gpu_worker --pools)")

    def handle(self, *args: Any, **options: Any) -> None:
        host = options["host"] or socket.gethostname()
        what = "worker" if options["worker"] else "dispatcher"
        try:
            if options["worker"]:
                pools = [p for p in options["pools"].split(",") if p]
                alive = worker_beats(host, pools)
            else:
                alive = [host] if dispatcher_beats(host) else []
        except redis.RedisError as error:
            self.stdout.write(f"Redis unreachable ({error}); not the {what}'s fault: alive")
            return
        if not alive:
            raise CommandError(
                f"no fresh {what} heartbeat from {host} in Redis: stale or missing", returncode=1
            )
        self.stdout.write(f"{what} alive: {', '.join(alive)}")

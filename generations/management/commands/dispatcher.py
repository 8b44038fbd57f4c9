from __future__ import annotations

import signal
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from generations.dispatcher import tick
from generations.leaving_chores import chores
from generations.liveness import write_dispatcher_heartbeat
from generations.retention import sweep_storage_now_and_then
from webhooks.sender import record_finished, sender


class Command(BaseCommand):
    help = (
        "Run the dispatcher: re-queue jobs of lost workers and jobs that vanished from Redis, "
        "tend the storage tiers, purge deleted images and collect orphaned files."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="run one step and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not stopping:
            close_old_connections()
            try:
                result = tick()
                write_dispatcher_heartbeat()  # after a tick that went through: the liveness probe reads it
            except Exception as exc:  # a database or Redis hiccup: log it and try again next tick
                self.stderr.write(f"dispatcher tick failed: {exc}")
            else:
                if result:
                    self.stdout.write(str(result))
            # Storage tiers, purges and orphans, in a thread of their own, every so often.
            sweep_storage_now_and_then()
            if options["once"]:
                break
            time.sleep(settings.ATELIER_DISPATCH_INTERVAL)
        # Webhooks in flight end within their deadline; record them rather than send them again.
        sender().wait_idle(settings.ATELIER_WEBHOOK_DEADLINE + 1)
        record_finished()
        chores().wait_idle(600)  # a purge or an export under way finishes (--once waits for it)

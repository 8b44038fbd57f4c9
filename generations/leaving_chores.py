"""The dispatcher's leaving chores, beside its loop: purging closed accounts past their grace
period, making data exports and deleting expired ones. Each can take long (thousands of files,
S3 calls, a mail), so the loop only checks that one is due and hands the round to a thread of its
own; one round runs at a time and the loop never waits for it (CONVENTIONS.md, 14)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from django.db import close_old_connections, connection
from django.utils import timezone

from accounts.models import AccountClosure, DataExport, ExportStatus
from generations.exports import UNFINISHED, delete_expired_exports, make_pending_exports
from generations.leaving import purge_due_accounts

log = logging.getLogger(__name__)


@dataclass
class ChoresResult:
    purged: int = 0
    exported: int = 0
    expired: int = 0


def chores_due() -> bool:
    now = timezone.now()
    return (
        AccountClosure.objects.filter(purged_at__isnull=True, purge_after__lte=now).exists()
        # Running while no round runs: left by a dispatcher that stopped (made again).
        or DataExport.objects.filter(status__in=UNFINISHED, user__is_active=True).exists()
        or DataExport.objects.filter(status=ExportStatus.READY, expires_at__lte=now).exists()
    )


def run_leaving_chores() -> ChoresResult:
    """One round, in the caller's thread (tests call it directly)."""
    return ChoresResult(
        purged=purge_due_accounts(), exported=make_pending_exports(), expired=delete_expired_exports()
    )


class ChoresThread:
    def __init__(self) -> None:
        self.thread: threading.Thread | None = None

    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start_if_due(self) -> bool:
        """Start a round when one is due and none is running; whether one was started."""
        if self.busy() or not chores_due():
            return False
        self.thread = threading.Thread(target=self.round, name="leaving-chores", daemon=True)
        self.thread.start()
        return True

    def round(self) -> None:
        try:
            close_old_connections()
            result = run_leaving_chores()
            log.info("leaving chores: %s", result)
        except Exception:
            log.exception("leaving chores failed; the next tick tries again")
        finally:
            connection.close()

    def wait_idle(self, seconds: float) -> bool:
        if self.thread is not None:
            self.thread.join(seconds)
        return not self.busy()


_chores = ChoresThread()


def chores() -> ChoresThread:
    return _chores

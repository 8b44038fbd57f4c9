"""Download my data: a zip of the member's images and uploads with ``generations.json`` (every
generation's prompt, parameters, dates, status and credits), made in the background by the
dispatcher's leaving chores (generations/leaving_chores.py), never in a request; kept in the media
store under ``exports/`` and served only to its owner until it expires, then deleted."""

from __future__ import annotations

import json
import logging
import smtplib
import tempfile
import zipfile
from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.mail import send_mail
from django.db.models import Sum
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import DataExport, ExportStatus, User
from billing.credits import format_credits
from billing.models import CreditEntry, EntryKind
from core.events import iso
from generations.models import Generation, Upload
from generations.selectors import generation_resource
from generations.storage import delete_content, open_content

log = logging.getLogger(__name__)

UNFINISHED = (ExportStatus.PENDING, ExportStatus.RUNNING)


def data_export_request(*, user: User, site: str) -> tuple[DataExport, bool]:
    """Queue an export of ``user``'s data (``site``: where the mail's link leads); an export
    still being made is returned instead of a second one. (export, whether it is new)."""
    waiting = DataExport.objects.filter(user=user, status__in=UNFINISHED).first()
    if waiting is not None:
        return waiting, False
    return DataExport.objects.create(user=user, site=site), True


def make_pending_exports(limit: int = 2) -> int:
    """Make the oldest waiting exports (not a closed account's); how many were made. One
    dispatcher runs one round at a time, so an export still marked running when a round starts
    was left by a dispatcher that stopped mid-way: it is made again."""
    DataExport.objects.filter(status=ExportStatus.RUNNING).update(status=ExportStatus.PENDING)
    made = 0
    waiting = DataExport.objects.filter(status=ExportStatus.PENDING, user__is_active=True)
    for export in waiting.order_by("requested_at")[:limit]:
        # Claimed with a conditional update: a second dispatcher leaves it alone.
        if DataExport.objects.filter(pk=export.pk, status=ExportStatus.PENDING).update(
            status=ExportStatus.RUNNING
        ):
            made += export_make(export)
    return made


def export_make(export: DataExport) -> bool:
    try:
        path, size = write_archive(export)
    except Exception:
        log.exception("data export %s failed", export.id)
        DataExport.objects.filter(pk=export.pk).update(status=ExportStatus.FAILED, finished_at=timezone.now())
        return False
    now = timezone.now()
    expires = now + timedelta(days=settings.ATELIER_DATA_EXPORT_DAYS)
    DataExport.objects.filter(pk=export.pk).update(
        status=ExportStatus.READY, file=path, size=size, finished_at=now, expires_at=expires
    )
    user = export.user
    if user.email:
        link = export.site + reverse("data_export_download", args=[export.id])
        page = export.site + reverse("data_export")
        context = {"user": user, "link": link, "expires_at": expires, "page": page}
        try:
            send_mail(
                f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}Your data is ready to download",
                render_to_string("leaving/export_mail.txt", context),
                None,
                [user.email],
            )
        except (smtplib.SMTPException, OSError) as exc:  # the page offers it all the same
            log.warning("could not mail the export link to %s: %s", user.email, exc)
    return True


def write_archive(export: DataExport) -> tuple[str, int]:
    """The zip, written to a temporary file then stored; (its path in the store, its size)."""
    user = export.user
    generations = list(Generation.objects.filter(user=user).prefetch_related("images").order_by("created_at"))
    captured = credits_captured([g.id for g in generations])
    with tempfile.TemporaryFile() as spool:
        with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as archive:
            records = [record(archive, generation, captured) for generation in generations]
            uploads = [upload_record(archive, upload) for upload in Upload.objects.filter(user=user)]
            document = {
                "user": {"username": user.username, "email": user.email, "joined": iso(user.date_joined)},
                "exported_at": iso(timezone.now()),
                "generations": records,
                "uploads": uploads,
            }
            archive.writestr("generations.json", json.dumps(document, indent=2, ensure_ascii=False))
        size = spool.tell()
        spool.seek(0)
        path = default_storage.save(f"exports/{export.id}.zip", File(spool))
    return path, size


def credits_captured(generation_ids: list[Any]) -> dict[Any, int]:
    spent: dict[Any, int] = defaultdict(int)
    entries = CreditEntry.objects.filter(generation_id__in=generation_ids, kind=EntryKind.CAPTURE)
    for row in entries.values("generation_id").annotate(total=Sum("credits")):
        spent[row["generation_id"]] = int(row["total"])
    return spent


def stored(archive: zipfile.ZipFile, name: str, path: str) -> str | None:
    """Copy one stored file into the zip (PNGs are compressed already); None when it is gone."""
    try:
        data = open_content(path)
    except (FileNotFoundError, OSError):
        return None
    archive.writestr(name, data, zipfile.ZIP_STORED)
    return name


# What the API's resource says of a generation while it lives, and means nothing in an archive.
LIVE_FIELDS = ("queue_position", "eta_seconds", "progress", "step", "total_steps", "waiting_reason", "url")


def record(archive: zipfile.ZipFile, generation: Generation, captured: dict[Any, int]) -> dict[str, Any]:
    """The generation as the API describes it (``generation_resource``), with its images' files
    in the zip, its LoRAs, and the credits it was charged."""
    resource = generation_resource(generation, position=0)
    for name in LIVE_FIELDS:
        resource.pop(name, None)
    resource["images"] = [
        {
            "id": str(image.id),
            "file": stored(archive, f"images/{generation.id}-{image.index}.png", image.original),
            "seed": image.seed,
            "width": image.width,
            "height": image.height,
            "public": image.is_public,
            "created_at": iso(image.created_at),
        }
        for image in generation.images.all()
    ]
    resource["loras"] = generation.loras
    resource["credits_charged"] = format_credits(captured.get(generation.id, 0))
    return resource


def upload_record(archive: zipfile.ZipFile, upload: Upload) -> dict[str, Any]:
    return {
        "id": str(upload.id),
        "file": stored(archive, f"uploads/{upload.id}.png", upload.file),
        "width": upload.width,
        "height": upload.height,
        "created_at": iso(upload.created_at),
    }


def delete_expired_exports() -> int:
    """Ready exports past their day are deleted from the store; their rows say so."""
    expired = DataExport.objects.filter(status=ExportStatus.READY, expires_at__lte=timezone.now())
    count = 0
    for export in expired:
        if export.file:
            delete_content(export.file)
        count += DataExport.objects.filter(pk=export.pk, status=ExportStatus.READY).update(
            status=ExportStatus.EXPIRED, file=""
        )
    return count


def export_for_download(*, user: User, export_id: Any) -> DataExport | None:
    """The owner's ready, unexpired export; None for anyone else's, or one that is not there."""
    return DataExport.objects.filter(
        pk=export_id, user=user, status=ExportStatus.READY, expires_at__gt=timezone.now()
    ).first()

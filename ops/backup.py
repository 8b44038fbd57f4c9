"""Back up and restore what Atelier cannot rebuild: the database and the media.

One archive (tar.gz) holds `database.dump` (pg_dump's custom format on PostgreSQL, a consistent
SQLite copy made with SQLite's online backup API otherwise), `media/` (every stored object, from the
filesystem or the S3 bucket) and `manifest.json`. Redis is not in it: a lost Redis loses queued RQ
jobs, rate-limit counters, idempotency records and worker heartbeats, and the dispatcher re-enqueues
every queued generation from the database (see `generations/dispatcher.py`). On S3, restored
objects are private again, then published images are made public-read as the database says.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

FORMAT_VERSION = 1
log = logging.getLogger(__name__)


def database_settings() -> dict[str, Any]:
    return dict(settings.DATABASES["default"])


def pg_env(db: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    return env


def pg_args(db: dict[str, Any]) -> list[str]:
    args = ["-h", str(db.get("HOST") or "127.0.0.1"), "-p", str(db.get("PORT") or 5432)]
    return [*args, "-U", str(db.get("USER") or "postgres"), "-d", str(db["NAME"])]


def dump_database(target: Path) -> str:
    db = database_settings()
    if db["ENGINE"].endswith("postgresql"):
        subprocess.run(
            ["pg_dump", "-Fc", "--no-owner", "-f", str(target), *pg_args(db)], env=pg_env(db), check=True
        )
        return "postgresql"
    connection.ensure_connection()
    raw: Any = connection.connection
    with sqlite3.connect(target) as copy:
        raw.backup(copy)
    return "sqlite"


def restore_database(source: Path, engine: str) -> None:
    db = database_settings()
    if engine == "postgresql":
        connection.close()
        args = ["pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction", *pg_args(db)]
        subprocess.run([*args, str(source)], env=pg_env(db), check=True)
        return
    connection.ensure_connection()
    raw: Any = connection.connection
    with sqlite3.connect(source) as backup:
        backup.backup(raw)


def media_names() -> list[str]:
    from generations.storage import cold_storage

    storage: Any = default_storage
    if hasattr(storage, "bucket_name"):
        return sorted(obj.key for obj in storage.bucket.objects.all())
    names: set[str] = set()
    for root in (Path(settings.MEDIA_ROOT), Path(cold_storage().location)):  # both storage tiers
        if root.exists():
            names.update(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return sorted(names)


def backup(archive: Path) -> dict[str, Any]:
    from generations.storage import open_content

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        engine = dump_database(folder / "database.dump")
        names = media_names()
        for name in names:
            target = folder / "media" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(open_content(name))  # from whichever tier holds it
        manifest = {"format": FORMAT_VERSION, "engine": engine, "media": len(names), "created": time.time()}
        (folder / "manifest.json").write_text(json.dumps(manifest))
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "w:gz") as tar:
            for item in ("manifest.json", "database.dump", "media"):
                if (folder / item).exists():
                    tar.add(folder / item, arcname=item)
    return manifest


def restore(archive: Path) -> dict[str, Any]:
    from generations.models import Image

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(folder, filter="data")  # refuses absolute paths and links out of the folder
        manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
        if manifest.get("format") != FORMAT_VERSION:
            raise ValueError(f"unknown backup format {manifest.get('format')!r}")
        engine = database_settings()["ENGINE"]
        if (manifest["engine"] == "postgresql") != engine.endswith("postgresql"):
            raise ValueError(f"the backup is of a {manifest['engine']} database; this one is {engine}")
        restore_database(folder / "database.dump", manifest["engine"])
        media = folder / "media"
        for path in sorted(media.rglob("*")) if media.exists() else []:
            if path.is_file():
                name = str(path.relative_to(media))
                if default_storage.exists(name):
                    default_storage.delete(name)
                default_storage.save(name, ContentFile(path.read_bytes()))
        # Every file came back to the hot tier; the sweep moves idle ones to the cold tier again.
        Image.all_objects.filter(cold=True).update(cold=False)
        restore_visibility()
    return manifest


def restore_visibility() -> None:
    """On S3 every restored object comes back private: published images become public-read again."""
    from generations.models import Image
    from generations.storage import is_remote, sync_visibility

    if not is_remote():
        return
    published = Image.objects.filter(is_public=True, hidden=False)
    for image in published.only("original", "thumbnail", "thumbnail_sizes", "is_public", "hidden").iterator():
        try:
            sync_visibility([image])
        except ClientError as exc:  # an object the archive did not have: the rest still comes back
            log.warning("could not make image %s public again: %s", image.pk, exc)

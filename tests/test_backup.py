"""`manage.py backup` and `restore` round trips, as an operator runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, child_env
from tests.s3_support import CREDENTIALS, lowercase, s3_env

SEED = """
from accounts.models import User
from generations.storage import move_to_cold, save_content
User.objects.create_user("keeper", password="x")
cold = save_content("images", b"old pixels", "png")[0]
move_to_cold(cold, public=False)  # the cold tier is backed up too
print(save_content("images", b"precious pixels", "png")[0], cold)
"""
DAMAGE = """
import shutil
from django.conf import settings
from generations.storage import cold_storage
from accounts.models import User
User.objects.filter(username="keeper").delete()
User.objects.create_user("intruder")
shutil.rmtree(settings.MEDIA_ROOT)
shutil.rmtree(cold_storage().location)
"""
CHECK = """
from accounts.models import User
from generations.storage import open_content
print(sorted(User.objects.values_list("username", flat=True)), open_content({path!r}).decode(),
      open_content({cold!r}).decode())
"""


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def round_trip(env: dict[str, str], archive: Path) -> None:
    manage(env, "migrate", "-v", "0")
    path, cold = manage(env, "shell", "-c", SEED).splitlines()[-1].split()
    assert "backed up" in manage(env, "backup", str(archive))
    manage(env, "shell", "-c", DAMAGE)
    assert "restored" in manage(env, "restore", str(archive))
    checked = manage(env, "shell", "-c", CHECK.format(path=path, cold=cold)).splitlines()[-1]
    assert checked == "['keeper'] precious pixels old pixels"


def test_backup_and_restore_on_sqlite(tmp_path: Path) -> None:
    env = {
        **child_env(),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "MEDIA_ROOT": str(tmp_path / "media"),
    }
    env["ATELIER_DATA_DIR"] = str(tmp_path)
    round_trip(env, tmp_path / "backups" / "atelier.tar.gz")


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="the PostgreSQL path runs where CI's server is",
)
def test_backup_and_restore_on_postgresql(tmp_path: Path) -> None:
    base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    scratch = "atelier_backup_check"
    admin = [*base.replace("postgres://", "").split("@")[-1:]]
    host, _, port = admin[0].partition(":")
    for sql in (f"DROP DATABASE IF EXISTS {scratch}", f"CREATE DATABASE {scratch}"):
        subprocess.run(
            ["psql", "-h", host, "-p", port or "5432", "-U", "postgres", "-c", sql, "test"], check=True
        )
    env = {**child_env(), "DATABASE_URL": f"{base}/{scratch}", "MEDIA_ROOT": str(tmp_path / "media")}
    try:
        round_trip(env, tmp_path / "atelier.tar.gz")
    finally:
        subprocess.run(
            [
                "psql",
                "-h",
                host,
                "-p",
                port or "5432",
                "-U",
                "postgres",
                "-c",
                f"DROP DATABASE {scratch}",
                "test",
            ]
        )


SEED_S3 = """
from accounts.models import User
from generations.models import Image
from generations.storage import save_content, sync_visibility
from tests.factories import queued_generation
keeper = User.objects.create_user("keeper", password="x")
paths = []
for index, public in enumerate((True, False)):
    generation = queued_generation(keeper, status="succeeded", is_public=public)
    original = save_content("images", f"pixels {index}".encode(), "png")[0]
    thumbnail = save_content("thumbs", f"thumb {index}".encode(), "webp")[0]
    image = Image.objects.create(generation=generation, index=0, seed=index, width=64, height=64,
        original=original, thumbnail=thumbnail, sha256="0" * 64, is_public=public)
    sync_visibility([image])
    paths.append(original)
print(*paths)
"""
DAMAGE_S3 = """
from django.core.files.storage import default_storage
from accounts.models import User
User.objects.filter(username="keeper").delete()
default_storage.bucket.objects.all().delete()
"""


def test_backup_and_restore_with_media_on_s3(tmp_path: Path, s3_server: str) -> None:
    """The bucket's objects go into the archive and come back; the published image is public again
    (one plain, cacheable URL) and the private one is not."""
    import boto3
    import requests

    bucket = "atelier-backup"
    boto3.client("s3", endpoint_url=s3_server, **lowercase(CREDENTIALS)).create_bucket(Bucket=bucket)
    env = {
        **child_env(),
        **s3_env(s3_server),
        "ATELIER_S3_BUCKET": bucket,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "ATELIER_DATA_DIR": str(tmp_path),
    }
    manage(env, "migrate", "-v", "0")
    public, private = manage(env, "shell", "-c", SEED_S3).splitlines()[-1].split()
    assert requests.get(f"{s3_server}/{bucket}/{public}", timeout=10).status_code == 200
    assert "and 4 media files" in manage(env, "backup", str(tmp_path / "atelier.tar.gz"))
    manage(env, "shell", "-c", DAMAGE_S3)
    assert requests.get(f"{s3_server}/{bucket}/{public}", timeout=10).status_code == 404

    assert "restored" in manage(env, "restore", str(tmp_path / "atelier.tar.gz"))

    check = f"from generations.storage import open_content; print(open_content({public!r}).decode())"
    assert manage(env, "shell", "-c", check).splitlines()[-1] == "pixels 0"
    served = requests.get(f"{s3_server}/{bucket}/{public}", timeout=10)
    assert served.status_code == 200 and served.content == b"pixels 0"
    assert served.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert requests.get(f"{s3_server}/{bucket}/{private}", timeout=10).status_code == 403

"""`manage.py backup` and `restore` round trips, as an operator runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, child_env

SEED = """
from accounts.models import User
from generations.storage import save_content
User.objects.create_user("keeper", password="x")
print(save_content("images", b"precious pixels", "png")[0])
"""
DAMAGE = """
import shutil
from django.conf import settings
from accounts.models import User
User.objects.filter(username="keeper").delete()
User.objects.create_user("intruder")
shutil.rmtree(settings.MEDIA_ROOT)
"""
CHECK = """
from accounts.models import User
from generations.storage import open_content
print(sorted(User.objects.values_list("username", flat=True)), open_content({path!r}).decode())
"""


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def round_trip(env: dict[str, str], archive: Path) -> None:
    manage(env, "migrate", "-v", "0")
    path = manage(env, "shell", "-c", SEED).splitlines()[-1]
    assert "backed up" in manage(env, "backup", str(archive))
    manage(env, "shell", "-c", DAMAGE)
    assert "restored" in manage(env, "restore", str(archive))
    assert (
        manage(env, "shell", "-c", CHECK.format(path=path)).splitlines()[-1] == "['keeper'] precious pixels"
    )


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

"""Defaults that are safe on a laptop too: a secret key of the installation's own, and webhooks to
private addresses only when a setting says so (issue 17, Medium 3)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, child_env

PRINT_SETTINGS = (
    "import django, json; django.setup(); from django.conf import settings; "
    "print(json.dumps([settings.DEBUG, settings.SECRET_KEY, settings.ATELIER_WEBHOOK_ALLOW_PRIVATE]))"
)


def laptop_settings(data_dir: Path, **extra: str) -> tuple[bool, str, bool]:
    """Settings as a fresh installation in ``data_dir`` sees them, nothing set but the defaults."""
    env = {**child_env(), "ATELIER_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "config.settings"}
    for name in (
        "DJANGO_DEBUG",
        "DJANGO_SECRET_KEY",
        "DJANGO_SECRET_KEY_FILE",
        "ATELIER_WEBHOOK_ALLOW_PRIVATE",
    ):
        env.pop(name, None)
    env.update(extra)
    done = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    debug, key, allow_private = json.loads(done.stdout.splitlines()[-1])
    return debug, key, allow_private


def test_each_installation_makes_its_own_secret_key_and_keeps_it(tmp_path: Path) -> None:
    debug, first, allow_private = laptop_settings(tmp_path / "one")
    assert debug is True  # the laptop stays in debug ...
    assert allow_private is False  # ... but private webhook targets need ATELIER_WEBHOOK_ALLOW_PRIVATE
    assert len(first) >= 50 and "insecure" not in first
    kept = tmp_path / "one" / "secret-key.txt"
    assert kept.read_text().strip() == first
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600  # kept like the admin password
    assert laptop_settings(tmp_path / "one")[1] == first  # the next start, and every process, reads it
    assert laptop_settings(tmp_path / "two")[1] != first  # another installation, another key


def test_an_explicit_key_and_setting_win(tmp_path: Path) -> None:
    _, key, allow_private = laptop_settings(
        tmp_path, DJANGO_SECRET_KEY="from-the-environment-" * 3, ATELIER_WEBHOOK_ALLOW_PRIVATE="1"
    )
    assert key == "from-the-environment-" * 3 and allow_private is True
    assert not (tmp_path / "secret-key.txt").exists()

"""A throwaway installation for a benchmark: SQLite file, media folder and data dir under `work`,
and the Redis started on `redis_port`."""

from __future__ import annotations

import os
from pathlib import Path


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

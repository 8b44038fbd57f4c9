"""`make test`: lint, type-check, then the whole pytest suite.

Uses the machine's PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set (CI), otherwise
SQLite and a private Redis started here (a laptop).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.private_redis import free_port, start_redis  # noqa: E402

PACKAGES = {"chromium": "/usr/bin/chromium", "nginx": "/usr/sbin/nginx"}


def step(*args: str) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, cwd=ROOT, check=True)


def ensure_debian_packages() -> None:
    """The browser tests drive Debian's Chromium and the proxy tests run Debian's nginx; install
    what is missing when we are allowed to (without them those tests fail, saying what to install)."""
    missing = [name for name, path in PACKAGES.items() if not Path(path).exists()]
    if not missing or os.environ.get("ATELIER_SKIP_APT"):
        return
    if shutil.which("apt-get") and os.geteuid() == 0:
        step("apt-get", "update", "-qq")
        step("apt-get", "install", "-y", "-qq", *missing)


def main(pytest_args: list[str]) -> int:
    python = sys.executable
    try:
        step(python, "-m", "ruff", "check", ".")
        step(python, "-m", "ruff", "format", "--check", ".")
        step(python, "-m", "mypy")
    except subprocess.CalledProcessError as exc:
        print(f"lint/type check failed: {exc}", file=sys.stderr)
        return 1
    ensure_debian_packages()
    env = dict(os.environ)
    env.setdefault("MEDIA_ROOT", str(ROOT / "var" / "test-media"))
    env.setdefault("ATELIER_PROGRESS_INTERVAL", "0.05")
    # Fault tests kill workers: a short heartbeat lets the reconciler notice within seconds.
    env.setdefault("ATELIER_HEARTBEAT_TTL", "3")
    redis = None
    if not env.get("REDIS_URL"):
        port = free_port()
        redis = start_redis(port, ROOT / "var" / "test-redis", persist=False)
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    try:
        return subprocess.run([python, "-m", "pytest", *pytest_args], cwd=ROOT, env=env).returncode
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`make run`: the whole product on the embedded default, as child processes that stop on Ctrl-C."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.private_redis import start_redis  # noqa: E402


def manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)


def ensure_admin(data_dir: Path) -> str:
    """First run: a staff account with a random password, written where the operator can find it."""
    password_file = data_dir / "admin-password.txt"
    if password_file.exists():
        return password_file.read_text().strip()
    password = secrets.token_urlsafe(12)
    code = (
        "from accounts.models import User\n"
        "if not User.objects.filter(username='admin').exists():\n"
        f"    User.objects.create_superuser('admin', '', {password!r})\n"
    )
    manage("shell", "-c", code)
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    return password


def main() -> int:
    data_dir = Path(os.environ.get("ATELIER_DATA_DIR", ROOT / "var"))
    data_dir.mkdir(parents=True, exist_ok=True)
    port = os.environ.get("PORT", "8000")
    host = os.environ.get("ATELIER_HOST", "127.0.0.1")
    children: list[subprocess.Popen[bytes]] = []
    # Set both explicitly: a process started in the background by a script inherits an ignored
    # SIGINT, and Ctrl-C must still stop everything.
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    children += private_redis_unless_configured(data_dir)
    try:
        manage("migrate", "--no-input", "-v", "0")
        password = ensure_admin(data_dir)
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", host, "-p", port, "config.asgi:application"], cwd=ROOT
            )
        )
        children.append(subprocess.Popen([sys.executable, "manage.py", "gpu_worker"], cwd=ROOT))
        children.append(subprocess.Popen([sys.executable, "manage.py", "dispatcher"], cwd=ROOT))
        print(f"\nAtelier is running at http://{host}:{port}/", flush=True)
        print(f"Sign up there, or sign in as staff: user 'admin', password '{password}'")
        print(f"(the password is kept in {data_dir / 'admin-password.txt'}).")
        print("Press Ctrl-C to stop.\n", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("A process stopped; shutting down.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(children)


def private_redis_unless_configured(data_dir: Path) -> list[subprocess.Popen[bytes]]:
    """Without REDIS_URL, start a private Redis (ATELIER_REDIS_PORT, 6380) and point REDIS_URL at it."""
    if os.environ.get("REDIS_URL"):
        return []
    redis_port = int(os.environ.get("ATELIER_REDIS_PORT", "6380"))
    process = start_redis(redis_port, data_dir / "redis")
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    return [process]


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for child in reversed(children):
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()


if __name__ == "__main__":
    sys.exit(main())

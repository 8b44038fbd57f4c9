"""`make run`'s script on the embedded default: SQLite, a private Redis, web and worker; Ctrl-C stops all."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from scripts.private_redis import free_port

ROOT = Path(__file__).resolve().parent.parent


def still_running(group: int) -> list[str]:
    """Processes of this process group that are alive (a zombie has already exited)."""
    pids = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout.split()
    if not pids:
        return []
    listing = subprocess.run(
        ["ps", "-o", "stat=,args=", "-p", ",".join(pids)], capture_output=True, text=True
    ).stdout.splitlines()
    return [line for line in listing if not line.startswith("Z")]


@pytest.mark.live
def test_the_run_command_starts_everything_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "MEDIA_ROOT")}
    env.update(PORT=str(port), ATELIER_REDIS_PORT=str(redis_port), ATELIER_DATA_DIR=str(tmp_path))
    process = subprocess.Popen(
        [sys.executable, "scripts/run.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(output)
        assert f"http://127.0.0.1:{port}/" in text, text
        password = re.search(r"password '([^']+)'", text)
        assert password, text
        assert (tmp_path / "atelier.sqlite3").exists()

        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/accounts/login/", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        manage_env = dict(env, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0")
        key = subprocess.run(
            [sys.executable, "manage.py", "create_api_key", "admin"],
            cwd=ROOT,
            env=manage_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        headers = {"Authorization": f"Bearer {key}"}
        body = {"prompt": "a small house", "width": 64, "height": 64, "steps": 3}
        created = requests.post(base + "/api/v1/generations", json=body, headers=headers, timeout=10)
        assert created.status_code == 202
        url = base + created.headers["Location"]
        deadline = time.monotonic() + 120
        while (status := requests.get(url, headers=headers, timeout=10).json()["status"]) not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert status == "succeeded"
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
    assert still_running(process.pid) == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", redis_port), timeout=2)  # the private Redis stopped too

"""`manage.py alive --worker|--dispatcher`, the liveness probe of the GPU worker and dispatcher
pods: exit 0 while this host's process beats in Redis, 1 with the reason once it stopped or hangs.
Run as Kubernetes runs it (a process of its own) against real worker and dispatcher processes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from generations.liveness import write_dispatcher_heartbeat
from generations.workers import erase_heartbeat, write_heartbeat
from scripts.private_redis import free_port
from tests.conftest import ROOT, child_env, stop, wait_for

HOST = socket.gethostname()
POD = "atelier-worker-tiny-7d9f"  # not HOST: the shared stack's workers may beat from this host
PROBE = ("--worker", "--pools", "tiny", "--host", POD)


def alive(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "manage.py", "alive", *args]
    return subprocess.run(
        command, cwd=ROOT, env=env or child_env(), capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def process_env(transactional_db: None) -> dict[str, str]:
    env = child_env()
    env["ATELIER_DISPATCHER_HEARTBEAT_TTL"] = "2"
    return env


@pytest.fixture
def worker(process_env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "manage.py", "gpu_worker", "--pools", "tiny", "--name", f"{POD}.4242"]
    process = subprocess.Popen(command, cwd=ROOT, env=process_env)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGCONT)
        stop(process)


@pytest.mark.live
def test_a_running_worker_is_alive_and_a_hung_or_stopped_one_is_not(
    worker: subprocess.Popen[bytes], process_env: dict[str, str]
) -> None:
    wait_for(lambda: alive(*PROBE).returncode == 0, 120, "the worker's heartbeat")
    said = alive(*PROBE)
    assert said.stdout.strip() == f"worker alive: {POD}.4242"
    assert alive("--worker", "--host", POD).returncode == 0  # without its pools: among the heartbeat keys
    assert alive("--worker", "--host", "some-other-pod").returncode == 1
    worker.send_signal(signal.SIGSTOP)  # hung: it stops beating and its heartbeat expires
    wait_for(lambda: alive(*PROBE).returncode == 1, 60, "a stale heartbeat")
    said = alive(*PROBE)
    assert f"no fresh worker heartbeat from {POD} in Redis: stale or missing" in said.stderr
    worker.send_signal(signal.SIGCONT)
    wait_for(lambda: alive(*PROBE).returncode == 0, 60, "the worker beating again")
    stop(worker)  # a clean stop erases its heartbeat at once
    assert alive(*PROBE).returncode == 1


@pytest.mark.live
def test_the_dispatcher_beats_once_per_loop(process_env: dict[str, str]) -> None:
    process = subprocess.Popen([sys.executable, "manage.py", "dispatcher"], cwd=ROOT, env=process_env)
    try:
        wait_for(lambda: alive("--dispatcher").returncode == 0, 60, "the dispatcher's heartbeat")
        assert alive("--dispatcher").stdout.strip() == f"dispatcher alive: {HOST}"
        process.send_signal(signal.SIGSTOP)  # a loop stuck past ATELIER_DISPATCHER_HEARTBEAT_TTL
        wait_for(lambda: alive("--dispatcher").returncode == 1, 60, "a stale dispatcher heartbeat")
        assert "no fresh dispatcher heartbeat" in alive("--dispatcher").stderr
    finally:
        process.send_signal(signal.SIGCONT)
        stop(process)


def test_a_missing_heartbeat_fails_and_only_this_hosts_workers_count() -> None:
    assert alive("--dispatcher", "--host", "never-started").returncode == 1
    write_heartbeat(f"{POD}x.1", {"pools": ["tiny"]}, ["tiny"], at=time.time())  # another pod's name
    try:
        refused = alive(*PROBE)
        assert refused.returncode == 1 and "stale or missing" in refused.stderr
    finally:
        erase_heartbeat(f"{POD}x.1", ["tiny"])
    write_dispatcher_heartbeat("a-dispatcher-pod")
    assert alive("--dispatcher", "--host", "a-dispatcher-pod").returncode == 0


def test_an_unreachable_redis_does_not_fail_the_probe() -> None:
    env = {**child_env(), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}  # nothing listens there
    said = alive("--worker", env=env)
    assert said.returncode == 0 and "Redis unreachable" in said.stdout and "alive" in said.stdout

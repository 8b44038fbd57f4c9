"""A delivery's deadline covers the lookup of its host: a slow DNS server cannot hold it longer.

The run is as real as we can make it without owning the machine's resolver: the webhook transport
in a process of its own, resolving through glibc's getaddrinfo and /etc/resolv.conf, which in that
process's private mount namespace names a real DNS server (tests/dns_support.py, UDP on 127.0.0.1:53
of a private network namespace) that holds its answers until told. Nothing is patched in Python.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def namespaces_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = ["unshare", "--user", "--map-root-user", "--mount", "--net", "true"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def run_against_held_dns() -> dict[str, Any]:
    env = {**os.environ, "ATELIER_WEBHOOK_ALLOW_PRIVATE": "1", "ATELIER_WEBHOOK_DEADLINE": "1"}
    command = [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "--net",
        sys.executable,
        "tests/dns_support.py",
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(
    not namespaces_available(), reason="needs Linux user namespaces (unshare) for a private resolver"
)
def test_a_slow_dns_answer_is_cut_at_the_deadline_and_a_prompt_one_is_delivered() -> None:
    seen = run_against_held_dns()
    # The lookup reached our DNS server, which had answered nothing when the delivery gave up.
    assert "slow-receiver.atelier.test" in seen["queries_while_held"]
    assert seen["answered_while_held"] == 0
    assert seen["held_status"] is None
    assert seen["held_error"].startswith("deadline: ") and "did not resolve" in seen["held_error"]
    # Creating an endpoint checks the URL under the same limit: a clear refusal, not a hang.
    assert "did not resolve within" in seen["check_error"]
    # Once the server answers, the same name resolves through it and the receiver gets the post.
    assert (seen["answered_status"], seen["answered_error"]) == (200, "")

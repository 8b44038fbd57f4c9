"""`make cluster`: the multi-machine topology on one host, for trying and testing it.

Two web processes behind a small reverse proxy (scripts/proxy.py), three gpu_workers and a
dispatcher, each its own process sharing only what separate machines would share: the database
(DATABASE_URL, PostgreSQL for real use), Redis (REDIS_URL) and the media store (ATELIER_S3_BUCKET
and the AWS_* settings; without a bucket, MEDIA_ROOT stands in for a shared volume). Without
REDIS_URL a private Redis is started, as `make run` does.

    DATABASE_URL=postgres://... REDIS_URL=redis://... make cluster   # PORT (8000) is the proxy's
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.run import interrupt, manage, private_redis_unless_configured, stop  # noqa: E402

WEB_PROCESSES = 2
GPU_WORKERS = 3


def start(args: list[str], env: dict[str, str], *, niceness: int = 0) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=ROOT, env=env, preexec_fn=(lambda: os.nice(niceness)) if niceness else None
    )


def main() -> int:
    data_dir = Path(os.environ.get("ATELIER_DATA_DIR", ROOT / "var"))
    data_dir.mkdir(parents=True, exist_ok=True)
    host = os.environ.get("ATELIER_HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    listed = os.environ.get("ATELIER_WEB_PORTS", "")  # e.g. "8101,8102"; default PORT+100, PORT+101
    default = [port + 100 + i for i in range(WEB_PROCESSES)]
    web_ports = [int(p) for p in listed.split(",")] if listed else default
    children: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    children += private_redis_unless_configured(data_dir)
    env = dict(os.environ)
    if not env.get("DATABASE_URL", "").startswith("postgres"):
        print("note: no PostgreSQL DATABASE_URL; the processes share a SQLite file instead", file=sys.stderr)
    try:
        manage("migrate", "--no-input", "-v", "0")
        python = sys.executable
        daphne = [python, "-m", "daphne", "-b", "127.0.0.1", "config.asgi:application"]
        webs = [start([*daphne, "-p", str(web_port)], env) for web_port in web_ports]
        children += webs
        for number in range(1, GPU_WORKERS + 1):
            # On one host the workers stand in for machines of their own: one CPU thread each
            # and a lower CPU priority, so they do not take the web processes' cores.
            worker = [
                python,
                "manage.py",
                "gpu_worker",
                "--name",
                f"{host}-gpu-{number}",
                "--cpu-threads",
                "1",
            ]
            children.append(start(worker, env, niceness=10))
        children.append(start([python, "manage.py", "dispatcher"], env))
        backends = [arg for web_port in web_ports for arg in ("--backend", f"127.0.0.1:{web_port}")]
        children.append(start([python, "scripts/proxy.py", "--listen", f"{host}:{port}", *backends], env))
        state = {"web_pids": [web.pid for web in webs], "web_ports": web_ports, "proxy_port": port}
        (data_dir / "cluster.json").write_text(json.dumps(state))
        print(f"\nAtelier cluster at http://{host}:{port}/ (web processes on {web_ports}).", flush=True)
        print(f"{GPU_WORKERS} gpu_workers and a dispatcher. Press Ctrl-C to stop.\n", flush=True)
        # Like separate machines, one process that dies does not take the others down.
        reported: set[int] = set()
        while any(web.poll() is None for web in webs):
            for child in children:
                if child.poll() is not None and child.pid not in reported:
                    reported.add(child.pid)
                    command = str(child.args)[:80]
                    print(f"process {child.pid} ({command}) stopped", file=sys.stderr)
            time.sleep(0.5)
        print("No web process is left; shutting down the cluster.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(children)


if __name__ == "__main__":
    sys.exit(main())

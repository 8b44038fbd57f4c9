"""`make cluster`: the production layout on one host, for trying and testing it.

nginx with the shipped configuration (deploy/nginx/atelier.conf) on PORT (HTTP) and
ATELIER_HTTPS_PORT (TLS, PORT+443, a self-signed certificate unless ATELIER_TLS_CERTIFICATE and
ATELIER_TLS_KEY name one) in front of two gunicorns (HTTP) and two daphnes (WebSockets); three
gpu_workers and a dispatcher. Each is its own process sharing only what separate machines would
share: the database (DATABASE_URL, PostgreSQL for real use), Redis (REDIS_URL) and the media store
(ATELIER_S3_BUCKET and the AWS_* settings; without a bucket, MEDIA_ROOT stands in for a shared
volume). Without REDIS_URL a private Redis is started, as `make run` does. nginx is installed from
Debian's packages when missing (as root).

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

from scripts.nginx_proxy import NginxMissing, ProxySite, find_nginx, start_nginx, write_config  # noqa: E402
from scripts.run import interrupt, private_redis_unless_configured, stop  # noqa: E402

WEB_PROCESSES = 2
GPU_WORKERS = 3


def start(args: list[str], env: dict[str, str], *, niceness: int = 0) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=ROOT, env=env, preexec_fn=(lambda: os.nice(niceness)) if niceness else None
    )


def ports(variable: str, first: int) -> list[int]:
    listed = os.environ.get(variable, "")  # e.g. "8101,8102"
    return [int(p) for p in listed.split(",")] if listed else [first + i for i in range(WEB_PROCESSES)]


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def request_max_bytes(env: dict[str, str]) -> int:
    """The app's body limit (ATELIER_REQUEST_MAX_BYTES), which the proxy enforces as well."""
    code = "from django.conf import settings; print(settings.ATELIER_REQUEST_MAX_BYTES)"
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True, capture_output=True
    )
    return int(done.stdout.decode().split()[-1])


def proxy_site(env: dict[str, str], web_ports: list[int], ws_ports: list[int]) -> ProxySite:
    port = int(env.get("PORT", "8000"))
    certificate, key = env.get("ATELIER_TLS_CERTIFICATE"), env.get("ATELIER_TLS_KEY")
    return ProxySite(
        web=[f"127.0.0.1:{p}" for p in web_ports],
        ws=[f"127.0.0.1:{p}" for p in ws_ports],
        host=env.get("ATELIER_HOST", "127.0.0.1"),
        http_port=port,
        https_port=int(env.get("ATELIER_HTTPS_PORT", str(port + 443))),
        static_root=Path(env["STATIC_ROOT"]),
        request_max_bytes=request_max_bytes(env),
        certificate=Path(certificate) if certificate else None,
        key=Path(key) if key else None,
    )


def main() -> int:
    try:
        nginx = find_nginx()
    except NginxMissing as missing:
        print(missing, file=sys.stderr)
        return 1
    data_dir = Path(os.environ.get("ATELIER_DATA_DIR", ROOT / "var"))
    data_dir.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("PORT", "8000"))
    web_ports, ws_ports = ports("ATELIER_WEB_PORTS", port + 100), ports("ATELIER_WS_PORTS", port + 200)
    children: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    children += private_redis_unless_configured(data_dir)
    env = dict(os.environ)
    # The proxy adds X-Forwarded-For: the app counts each client, not the proxy (docs/security.md).
    env.setdefault("ATELIER_TRUSTED_PROXIES", "1")
    env.setdefault("STATIC_ROOT", str(data_dir / "static"))
    # Two gunicorns on one host stand in for two machines: one process each unless told otherwise.
    env.setdefault("WEB_CONCURRENCY", "1")
    if not env.get("DATABASE_URL", "").startswith("postgres"):
        print("note: no PostgreSQL DATABASE_URL; the processes share a SQLite file instead", file=sys.stderr)
    try:
        manage(env, "migrate", "--no-input", "-v", "0")
        manage(env, "collectstatic", "--no-input", "-v", "0")
        site = proxy_site(env, web_ports, ws_ports)
        python = sys.executable
        gunicorn = [python, "-m", "gunicorn", "-c", "config/gunicorn.py"]
        webs = [start(gunicorn, {**env, "WEB_BIND": f"127.0.0.1:{p}"}) for p in web_ports]
        daphne = [python, "-m", "daphne", "-b", "127.0.0.1", "config.asgi:application"]
        sockets = [start([*daphne, "-p", str(p)], env) for p in ws_ports]
        children += webs + sockets
        host = site.host
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
        proxy = start_nginx(write_config(site, data_dir / "nginx"), binary=nginx)
        children.append(proxy)
        state = {
            "web_pids": [web.pid for web in webs],
            "ws_pids": [socket.pid for socket in sockets],
            "web_ports": web_ports,
            "ws_ports": ws_ports,
            "proxy_port": site.http_port,
            "https_port": site.https_port,
        }
        (data_dir / "cluster.json").write_text(json.dumps(state))
        print(
            f"\nAtelier cluster at http://{host}:{site.http_port}/ and https://{host}:{site.https_port}/",
            flush=True,
        )
        print(f"(nginx; gunicorn on {web_ports}, daphne on {ws_ports}).", flush=True)
        print(f"{GPU_WORKERS} gpu_workers and a dispatcher. Press Ctrl-C to stop.\n", flush=True)
        # Like separate machines, one process that dies does not take the others down.
        reported: set[int] = set()
        while (
            proxy.poll() is None
            and any(p.poll() is None for p in webs)
            and any(p.poll() is None for p in sockets)
        ):
            for child in children:
                if child.poll() is not None and child.pid not in reported:
                    reported.add(child.pid)
                    command = str(child.args)[:80]
                    print(f"process {child.pid} ({command}) stopped", file=sys.stderr)
            time.sleep(0.5)
        print("The proxy, or every web or WebSocket process, stopped; shutting down.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(children)


if __name__ == "__main__":
    sys.exit(main())

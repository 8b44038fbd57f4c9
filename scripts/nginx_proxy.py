"""Run nginx with Atelier's shipped configuration (deploy/nginx/atelier.conf) on one host.

`make cluster` and the tests use this: it finds Debian's nginx (installing it with apt-get when
missing and allowed), fills the configuration's addresses, ports and paths, wraps it in a small main
configuration that keeps every file nginx writes in one folder, and starts nginx in the foreground.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx" / "atelier.conf"
PLACEHOLDER = re.compile(r"\$\{(ATELIER_[A-Z_]+)\}")
INSTALL_HINT = "nginx is not installed: apt-get install nginx (`make test` installs it when run as root)"


class NginxMissing(RuntimeError):
    pass


def render(template: str, values: dict[str, str]) -> str:
    """Fill ``${ATELIER_...}`` placeholders, as envsubst does in nginx's official image; nginx's
    own ``$variables`` are left alone. A placeholder without a value is an error, not a blank."""
    missing = sorted({name for name in PLACEHOLDER.findall(template) if name not in values})
    if missing:
        raise ValueError(f"no value for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def find_nginx(*, install: bool = True) -> str:
    """The nginx binary; installed from Debian's packages when missing and we run as root."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if found is None and install and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx"], check=True)
        found = shutil.which("nginx") or "/usr/sbin/nginx"
    if found is None or not Path(found).exists():
        raise NginxMissing(INSTALL_HINT)
    return found


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, made once, for TLS on one host."""
    certificate, key = folder / "localhost.crt", folder / "localhost.key"
    if not certificate.exists() or not key.exists():
        folder.mkdir(parents=True, exist_ok=True)
        request = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825"
        names = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
        files = ["-keyout", str(key), "-out", str(certificate)]
        subprocess.run(["openssl", *request.split(), *names, *files], check=True, capture_output=True)
        key.chmod(0o600)
    return certificate, key


@dataclass
class ProxySite:
    """Where the proxy listens and what it sends where."""

    web: list[str]  # gunicorn addresses, host:port
    ws: list[str]  # daphne addresses
    http_port: int
    https_port: int
    static_root: Path
    request_max_bytes: int
    host: str = "127.0.0.1"
    certificate: Path | None = None
    key: Path | None = None


def upstream_lines(addresses: list[str]) -> str:
    return " ".join(f"server {address};" for address in addresses)


def write_config(site: ProxySite, folder: Path) -> Path:
    """The shipped configuration filled in for ``site``, inside a main configuration that keeps
    nginx's pid, temporary files and cache under ``folder``; returns the main file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("body", "proxy", "cache", "fastcgi", "uwsgi", "scgi"):
        (folder / name).mkdir(exist_ok=True)
    certificate, key = site.certificate, site.key
    if certificate is None or key is None:
        certificate, key = self_signed_certificate(folder / "tls")
    values = {
        "ATELIER_WEB_SERVERS": upstream_lines(site.web),
        "ATELIER_WS_SERVERS": upstream_lines(site.ws),
        "ATELIER_HTTP_PORT": f"{site.host}:{site.http_port}",
        "ATELIER_HTTPS_PORT": f"{site.host}:{site.https_port}",
        "ATELIER_TLS_CERTIFICATE": str(certificate),
        "ATELIER_TLS_KEY": str(key),
        "ATELIER_STATIC_ROOT": str(site.static_root),
        "ATELIER_PROXY_CACHE": str(folder / "cache"),
        "ATELIER_REQUEST_MAX_BYTES": str(site.request_max_bytes),
    }
    (folder / "atelier.conf").write_text(render(TEMPLATE.read_text(), values))
    mime_types = Path("/etc/nginx/mime.types")
    # Started by root, the workers would otherwise drop to `nobody`, who cannot read a private
    # data folder: they run as whoever started the cluster, like its other processes.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    temp_folders = {
        "client_body": "body",
        "proxy": "proxy",
        "fastcgi": "fastcgi",
        "uwsgi": "uwsgi",
        "scgi": "scgi",
    }
    temp_paths = "\n".join(f"    {kind}_temp_path {folder / name};" for kind, name in temp_folders.items())
    main = f"""# Written by scripts/nginx_proxy.py: the shipped deploy/nginx/atelier.conf, run from {folder}.
{user}
daemon off;
pid {folder / "nginx.pid"};
error_log stderr warn;
worker_processes 2;
# A proxied WebSocket holds two connections (client and daphne): room for thousands of clients.
worker_rlimit_nofile 20000;
events {{ worker_connections 8192; }}
http {{
    {f"include {mime_types};" if mime_types.exists() else ""}
    default_type application/octet-stream;
    sendfile on;
{temp_paths}
    include {folder / "atelier.conf"};
}}
"""
    (folder / "nginx.conf").write_text(main)
    return folder / "nginx.conf"


def start_nginx(
    config: Path, *, binary: str | None = None, access_log: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """nginx in the foreground with ``config``; it stops on SIGTERM (fast) or SIGQUIT (graceful).
    A configuration nginx refuses fails here, with nginx's own message."""
    nginx = binary or find_nginx()
    prefix = str(config.parent)
    checked = subprocess.run(
        [nginx, "-t", "-q", "-e", "stderr", "-p", prefix, "-c", str(config)], capture_output=True, text=True
    )
    if checked.returncode != 0:
        raise RuntimeError(f"nginx refused {config}:\n{checked.stderr}")
    # The access log goes to nginx's standard output (the terminal, or ``access_log``).
    return subprocess.Popen([nginx, "-e", "stderr", "-p", prefix, "-c", str(config)], stdout=access_log)

"""A container's health check: GET /readyz on this container's gunicorn or daphne, the way the
reverse proxy sends it (an allowed Host, ``X-Forwarded-Proto: https``), so that the production
settings neither refuse the host nor redirect to HTTPS. Standard library only.

    python scripts/readyz.py 8000    # exit 0 when ready (or degraded: jobs wait for a worker)
"""

from __future__ import annotations

import os
import sys
import urllib.request


def allowed_host() -> str:
    hosts = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h.strip()]
    first = hosts[0] if hosts else "localhost"
    return "localhost" if first == "*" else first.lstrip(".")  # ".example.com" allows example.com


def main(argv: list[str]) -> int:
    port = int(argv[1]) if len(argv) > 1 else 8000
    headers = {"Host": allowed_host(), "X-Forwarded-Proto": "https"}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/readyz", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - a fixed http URL
            return 0 if response.status == 200 else 1
    except (OSError, ValueError) as error:  # refused, timed out, or an HTTP error status
        print(f"not ready: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

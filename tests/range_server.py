"""A small HTTPS file server for the model download tests, run as its own process:

    python tests/range_server.py DIR PORT CERT KEY LOG [--break-first-after BYTES]

It answers Range requests (206 with Content-Range), writes each request's path and Range header to
LOG, and with --break-first-after closes the first response after that many bytes of the body,
as a dropped connection would.
"""

from __future__ import annotations

import argparse
import re
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def handler(root: Path, log: Path, break_after: int | None) -> type[BaseHTTPRequestHandler]:
    state = {"broken": False}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            asked = self.headers.get("Range", "")
            with lock, log.open("a") as out:
                out.write(f"{self.path} {asked or '-'}\n")
            path = root / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404)
                return
            body = path.read_bytes()
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", asked)
            if match:
                start = int(match.group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            part = body[start:]
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            with lock:
                cut = break_after is not None and not state["broken"]
                state["broken"] = state["broken"] or cut
            if cut:
                self.wfile.write(part[:break_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(part)

    return Handler


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument("cert")
    parser.add_argument("key")
    parser.add_argument("log", type=Path)
    parser.add_argument("--break-first-after", type=int, default=None)
    options = parser.parse_args(argv)
    server = ThreadingHTTPServer(
        ("127.0.0.1", options.port), handler(options.root, options.log, options.break_first_after)
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(options.cert, options.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

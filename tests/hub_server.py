"""A small stand-in for a Hugging Face hub, run as its own process by the model tests:

    python tests/hub_server.py ROOT PORT LOG [--break-first-after BYTES]

ROOT/<org>/<name>/<revision>/ holds each revision's files; a revision's commit is the sha1 of its
name, so a repo can be asked for by branch name or by commit. It speaks the part of the hub's API
that `huggingface_hub.snapshot_download` uses:

- GET /api/models/<org>/<name>[/revision/<rev>]: {"id", "sha", "siblings": [{"rfilename"}]};
  401 with X-Error-Code RepoNotFound for an unknown repo, 404 RevisionNotFound for an unknown rev.
- HEAD and GET /<org>/<name>/resolve/<rev>/<path>: X-Repo-Commit, ETag (the file's sha256) and
  Content-Length, answering Range requests with 206.

Each request's method, path and Range header are appended to LOG. With --break-first-after, the
first file body longer than BYTES is cut off there, as a dropped connection would.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

API = re.compile(r"/api/models/([^/]+/[^/]+?)(?:/revision/(.+))?")
RESOLVE = re.compile(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)")


def commit_of(revision: str) -> str:
    return hashlib.sha1(revision.encode()).hexdigest()  # noqa: S324 - a name, not a secret


def handler(root: Path, log: Path, break_after: int | None) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()
    state = {"broken": False}

    def revision_folder(repo: str, revision: str) -> Path | None:
        folder = root / repo
        for candidate in sorted(folder.iterdir()) if folder.is_dir() else []:
            if revision in (candidate.name, commit_of(candidate.name)):
                return candidate
        return None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def refuse(self, status: int, code: str) -> None:
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self) -> None:
            self.answer(body=False)

        def do_GET(self) -> None:
            self.answer(body=True)

        def answer(self, *, body: bool) -> None:
            path = unquote(self.path.split("?")[0])
            with lock, log.open("a") as out:
                out.write(f"{self.command} {path} {self.headers.get('Range') or '-'}\n")
            if match := API.fullmatch(path):
                self.repo_info(match.group(1), match.group(2) or "main")
            elif match := RESOLVE.fullmatch(path):
                self.file(match.group(1), match.group(2), match.group(3), body=body)
            else:
                self.refuse(404, "EntryNotFound")

        def repo_info(self, repo: str, revision: str) -> None:
            if not (root / repo).is_dir():
                self.refuse(401, "RepoNotFound")
                return
            folder = revision_folder(repo, revision)
            if folder is None:
                self.refuse(404, "RevisionNotFound")
                return
            files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
            info = {"id": repo, "sha": commit_of(folder.name), "siblings": [{"rfilename": f} for f in files]}
            data = json.dumps(info).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def file(self, repo: str, revision: str, name: str, *, body: bool) -> None:
            folder = revision_folder(repo, revision) if (root / repo).is_dir() else None
            if folder is None or not (folder / name).is_file():
                self.refuse(404, "EntryNotFound" if folder else "RevisionNotFound")
                return
            data = (folder / name).read_bytes()
            start = 0
            if match := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
                start = int(match.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("X-Repo-Commit", commit_of(folder.name))
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if not body:
                return
            with lock:
                cut = break_after is not None and not state["broken"] and len(data) - start > break_after
                state["broken"] = state["broken"] or cut
            if cut and break_after is not None:
                self.wfile.write(data[start : start + break_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data[start:])

    return Handler


def main() -> None:
    root, port, log = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    break_after = int(sys.argv[5]) if sys.argv[4:5] == ["--break-first-after"] else None
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(root, log, break_after))
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

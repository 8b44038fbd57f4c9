"""The client side of bench/latency.py: one round trip timed in phases, submissions per second,
percentiles, and ComfyUI as the reference server (started from its own checkout and venv, outside
this repository; none of its code is imported here, only its HTTP and WebSocket API is used)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

PHASES = ("post", "run", "get", "image")


class Http:
    """One kept-alive HTTP/1.1 connection; the client must cost little beside the servers."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.headers = headers or {}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: Any = None, expect: int = 200) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers, **({"Content-Type": "application/json"} if data else {})}
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        content = response.read()
        if response.status != expect:
            raise RuntimeError(f"{method} {path}: {response.status} {content[:300]!r}")
        return content

    def json(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        return json.loads(self.request(method, path, body, expect))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarize(samples: list[dict[str, float]]) -> dict[str, float]:
    """p50/p95 of the whole round trip, and the median of each phase, in milliseconds."""
    totals = [sum(s[p] for p in PHASES) * 1000 for s in samples]
    summary = {"p50": percentile(totals, 0.5), "p95": percentile(totals, 0.95)}
    summary.update({p: percentile([s[p] * 1000 for s in samples], 0.5) for p in PHASES})
    return summary


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes and all their descendants (Linux).

    Unlike wall-clock phases, the CPU a round trip costs each process barely moves with the load
    that other programs put on the machine: the figure to compare on a shared machine.
    """
    tick = os.sysconf("SC_CLK_TCK")
    total, todo, seen = 0.0, list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
    return total


def submission_rate(make: Callable[[], Callable[[int], None]], total: int, threads: int) -> float:
    """POSTs per second from `threads` clients, each on its own connection (`make()` per thread)."""
    counter = iter(range(total))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def client() -> None:
        submit = make()
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            try:
                submit(index)
            except BaseException as exc:  # reported below: a failed POST must not count
                failures.append(exc)
                return

    workers = [threading.Thread(target=client) for _ in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise RuntimeError(f"{len(failures)} submissions failed: {failures[0]}")
    return total / (time.perf_counter() - start)


class ComfyUI:
    """ComfyUI's own server, flow EmptyImage -> SaveImage, measured like Atelier."""

    name = "ComfyUI"

    def __init__(self, checkout: Path, python: str, work: Path, port: int) -> None:
        self.port = port
        self.client_id = uuid.uuid4().hex
        self.counter = 0
        work.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                *(python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port)),
                *("--base-directory", str(work), "--disable-all-custom-nodes", "--dont-print-server"),
                *("--database-url", "sqlite:///:memory:"),
            ],
            cwd=checkout,
            stdout=subprocess.DEVNULL,
            stderr=open(work / "comfyui.log", "wb"),  # noqa: SIM115 - the child keeps it
        )

    def start(self) -> None:
        """Wait until the server answers (the process starts with this object)."""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("ComfyUI exited while starting: see comfyui.log in its work folder")
            try:
                Http(self.port).request("GET", "/system_stats")
                return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError("ComfyUI did not start")

    def cpu_groups(self) -> dict[str, list[int]]:
        return {"server": [self.process.pid]}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()

    def graph(self, side: int) -> dict[str, Any]:
        # A new colour each time: ComfyUI would otherwise answer a repeated graph from its cache.
        # A new folder every 50 images: SaveImage lists its folder to number the file, which
        # slows it down as a folder fills (512x512 p50 7 -> 61 ms after a few hundred images).
        self.counter += 1
        empty = {"width": side, "height": side, "batch_size": 1, "color": self.counter % 0xFFFFFF}
        save = {"images": ["1", 0], "filename_prefix": f"bench{self.counter // 50}/img"}
        return {
            "1": {"class_type": "EmptyImage", "inputs": empty},
            "2": {"class_type": "SaveImage", "inputs": save},
        }

    @contextmanager
    def session(self) -> Iterator[Callable[[int], dict[str, float]]]:
        from websockets.sync.client import connect

        http = Http(self.port)
        with connect(f"ws://127.0.0.1:{self.port}/ws?clientId={self.client_id}", max_size=None) as ws:

            def round_trip(side: int) -> dict[str, float]:
                t0 = time.perf_counter()
                body = {"prompt": self.graph(side), "client_id": self.client_id}
                prompt_id = http.json("POST", "/prompt", body)["prompt_id"]
                t1 = time.perf_counter()
                while True:
                    message = ws.recv(timeout=60)
                    if isinstance(message, bytes):
                        continue  # previews
                    event = json.loads(message)
                    data = event.get("data") or {}
                    finished = event.get("type") == "executing" and data.get("node") is None
                    if finished and data.get("prompt_id") == prompt_id:
                        break
                t2 = time.perf_counter()
                history = http.json("GET", f"/history/{prompt_id}")[prompt_id]
                image = history["outputs"]["2"]["images"][0]
                t3 = time.perf_counter()
                query = urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
                http.request("GET", f"/view?{query}")
                t4 = time.perf_counter()
                return {"post": t1 - t0, "run": t2 - t1, "get": t3 - t2, "image": t4 - t3}

            yield round_trip

    def submitter(self) -> Callable[[int], None]:
        http = Http(self.port)

        def submit(index: int) -> None:
            http.json("POST", "/prompt", {"prompt": self.graph(64), "client_id": self.client_id})

        return submit

    def drain_rate(self, total: int) -> tuple[float, int]:
        """Queue `total` prompts, then jobs/s over those that started after the last was queued."""
        submit = self.submitter()
        for index in range(total):
            submit(index)
        queued_at = time.time()
        http = Http(self.port)
        while http.json("GET", "/queue")["queue_pending"] or http.json("GET", "/queue")["queue_running"]:
            time.sleep(0.05)
        history = http.json("GET", f"/history?max_items={total}")
        times = []
        for entry in history.values():
            stamps = dict((name, data["timestamp"] / 1000) for name, data in entry["status"]["messages"])
            if stamps.get("execution_start", 0) >= queued_at and "execution_success" in stamps:
                times.append(stamps["execution_success"])
        if len(times) < 2:
            return 0.0, len(times)
        return len(times) / (max(times) - queued_at), len(times)


def image_path(url: str) -> str:
    """The path and query of an image URL (Atelier's are absolute or site-relative)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def comfyui_paths(checkout: str | None, python: str | None) -> tuple[Path, str] | None:
    """Where ComfyUI's checkout and its venv's python are, or None when it is not set up."""
    folder = Path(checkout or os.environ.get("COMFYUI_DIR", "/work/scratch/comfyui"))
    exe = python or os.environ.get("COMFYUI_PYTHON") or str(folder.parent / "comfyui-venv/bin/python")
    if (folder / "main.py").exists() and Path(exe).exists():
        return folder, exe
    return None

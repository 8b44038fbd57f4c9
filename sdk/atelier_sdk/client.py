"""A small, dependable client: typed errors, safe retries, waiting and live events."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import requests
from websockets.sync.client import connect

from atelier_sdk.errors import ApiError, error_from

TERMINAL = ("succeeded", "failed", "canceled")


class Client:
    def __init__(
        self,
        api_key: str,
        base_url: str = "http://127.0.0.1:8000",
        *,
        retries: int = 3,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One API call. POSTs carry an Idempotency-Key, so a retry after a network error can
        never create a second generation."""
        headers = dict(kwargs.pop("headers", {}) or {})
        if method == "POST":
            headers.setdefault("Idempotency-Key", str(uuid.uuid4()))
        url = path if path.startswith("http") else self.base_url + path
        for attempt in range(self.retries + 1):
            try:
                response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout):
                if attempt == self.retries:
                    raise
                time.sleep(0.5 * 2**attempt)
                continue
            if response.status_code == 429 and attempt < self.retries:
                time.sleep(min(float(response.headers.get("Retry-After", "1")), 30))
                continue
            if response.status_code >= 400:
                raise error_from(response.status_code, safe_json(response))
            return response
        raise AssertionError("unreachable")

    def generate(
        self, prompt: str, *, wait: bool = False, timeout: float = 300, **fields: Any
    ) -> dict[str, Any]:
        response = self.request("POST", "/api/v1/generations", json={"prompt": prompt, **fields})
        generation: dict[str, Any] = response.json()
        return self.wait(generation["id"], timeout=timeout) if wait else generation

    def get(self, generation_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.request("GET", f"/api/v1/generations/{generation_id}").json()
        return body

    def list(self, limit: int = 20) -> Iterator[dict[str, Any]]:
        """Every generation, newest first, following the cursor."""
        url: str | None = f"/api/v1/generations?limit={limit}"
        while url:
            page = self.request("GET", url).json()
            yield from page["data"]
            url = page["next"]

    def cancel(self, generation_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.request("POST", f"/api/v1/generations/{generation_id}/cancel").json()
        return body

    def wait(self, generation_id: str, timeout: float = 300, interval: float = 0.5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            generation = self.get(generation_id)
            if generation["status"] in TERMINAL:
                return generation
            if time.monotonic() > deadline:
                raise TimeoutError(f"generation {generation_id} is still {generation['status']}")
            time.sleep(interval)

    def stream_events(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """The account's events as they happen, after a snapshot of active generations."""
        ws_url = self.base_url.replace("http", "ws", 1) + "/ws/v1/events/"
        headers = {"Authorization": str(self.session.headers["Authorization"])}
        with connect(ws_url, additional_headers=headers, open_timeout=self.timeout) as socket:
            while True:
                yield json.loads(socket.recv(timeout=timeout))

    def download(self, image: dict[str, Any], path: str) -> str:
        response = self.request("GET", image["url"])
        with open(path, "wb") as handle:
            handle.write(response.content)
        return path


def safe_json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {
            "error": {"code": "api_error", "message": response.text[:200] or f"HTTP {response.status_code}"}
        }


__all__ = ["ApiError", "Client"]

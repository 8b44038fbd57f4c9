"""The Python SDK and its CLI against a real running server."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from atelier_sdk import AuthenticationError, Client, NotFound, ValidationError
from PIL import Image
from requests.adapters import HTTPAdapter

from generations.models import Generation
from tests.conftest import ROOT, ApiUser

pytestmark = pytest.mark.live

SMALL: dict[str, Any] = {"width": 64, "height": 64, "steps": 4}


def test_generate_wait_download_list_and_cancel(alice: ApiUser, tmp_path: Path) -> None:
    client = Client(alice.key, alice.base_url)
    done = client.generate("a glass apple", wait=True, **SMALL)
    assert done["status"] == "succeeded"
    path = client.download(done["images"][0], str(tmp_path / "apple.png"))
    assert Image.open(path).size == (64, 64)
    slow = client.generate("a slow one", width=512, height=512, steps=150)
    assert client.cancel(slow["id"])["status"] in ("canceled", "running")
    assert client.wait(slow["id"])["status"] == "canceled"
    assert [g["id"] for g in client.list(limit=1)] == [slow["id"], done["id"]]


def test_errors_are_typed(alice: ApiUser, bob: ApiUser) -> None:
    client = Client(alice.key, alice.base_url)
    with pytest.raises(ValidationError) as invalid:
        client.generate("x", width=500)
    assert "width" in invalid.value.details
    theirs = Client(bob.key, bob.base_url).generate("bob's", **SMALL)
    with pytest.raises(NotFound):
        client.get(theirs["id"])
    with pytest.raises(AuthenticationError):
        Client("atl_nope.nope", alice.base_url).get(theirs["id"])


class LosesFirstResponse(HTTPAdapter):
    """The request reaches the server, but the first answer is lost on the way back."""

    lost = 0

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().send(request, *args, **kwargs)
        if request.method == "POST" and not self.lost:
            self.lost += 1
            raise requests.ConnectionError("connection reset while reading the response")
        return response


def test_a_retry_after_a_network_error_reuses_the_idempotency_key(alice: ApiUser) -> None:
    client = Client(alice.key, alice.base_url)
    client.session.mount("http://", LosesFirstResponse())
    generation = client.generate("only once", **SMALL)
    assert Generation.objects.filter(user=alice.user).count() == 1
    assert str(Generation.objects.get(user=alice.user).id) == generation["id"]


def test_stream_events_sees_a_generation_through(alice: ApiUser) -> None:
    client = Client(alice.key, alice.base_url)
    events = client.stream_events(timeout=60)
    assert next(events)["type"] == "snapshot"
    generation = client.generate("streamed", **SMALL)
    seen = []
    for event in events:
        if event.get("id") == generation["id"]:
            seen.append(event["type"])
            if event["type"] == "generation.succeeded":
                break
    assert seen[0] == "generation.queued" and "generation.progress" in seen


def test_the_cli_renders_an_image_file_with_a_progress_bar(alice: ApiUser, tmp_path: Path) -> None:
    output = tmp_path / "cli.png"
    env = dict(os.environ, ATELIER_API_KEY=alice.key, ATELIER_BASE_URL=alice.base_url)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "atelier_sdk.cli",
            "generate",
            "a tiny robot",
            "-o",
            str(output),
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "8",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(output)
    assert "[" in result.stderr and "100.0%" in result.stderr
    assert Image.open(io.BytesIO(output.read_bytes())).size == (64, 64)

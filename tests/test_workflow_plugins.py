"""Custom nodes as plugins: the example package shipped in plugins/atelier-example-nodes (installed
in the tests, as requirements-test.txt says) is listed in /object_info and runs in a workflow on a
real worker; a broken plugin is skipped and reported, and never takes a worker down."""

from __future__ import annotations

import io
import json
import pathlib
import subprocess
import sys
import time
import uuid
from typing import Any

import numpy as np
import pytest
import requests
from django.conf import settings
from PIL import Image

from generations.workers import heartbeat_key
from tests.comfy_support import txt2img
from tests.conftest import ApiUser, Servers, stop, wait_for
from workflows.registry import Registry, load_plugins

MODEL = settings.ATELIER_DEFAULT_MODEL


def broken_plugins(folder: pathlib.Path) -> pathlib.Path:
    """Two installed-looking distributions whose ``atelier.nodes`` entry points are broken: one
    raises at import, one registers a node without its FUNCTION."""
    (folder / "exploding_nodes.py").write_text("raise RuntimeError('boom at import')\n")
    (folder / "halfway_nodes.py").write_text(
        "class Half:\n"
        "    RETURN_TYPES = ('IMAGE',)\n"
        "    @classmethod\n"
        "    def INPUT_TYPES(cls):\n"
        "        return {'required': {}}\n"
        "NODE_CLASS_MAPPINGS = {'Half': Half}\n"
    )
    info = folder / "broken_nodes-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-nodes\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[atelier.nodes]\nexploding = exploding_nodes\nhalfway = halfway_nodes\n"
    )
    return folder


def test_it_loads_the_example_plugin_and_skips_broken_ones(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(broken_plugins(tmp_path)))
    found = Registry()
    load_plugins(found)
    assert found.plugins["example"] == ["ExampleInvert", "ExamplePosterize"]
    assert found.modules["ExamplePosterize"] == "custom_nodes.example"
    assert found.broken["exploding"] == "RuntimeError: boom at import"
    assert "FUNCTION" in found.broken["halfway"]
    assert "Half" not in found.classes


@pytest.mark.django_db
def test_object_info_lists_the_plugin_nodes_as_comfyui_does(client: Any) -> None:
    from accounts.models import User
    from accounts.services import api_key_create

    _, key = api_key_create(user=User.objects.create_user("plugin-viewer", password="x"))
    answer = client.get("/object_info/ExamplePosterize", HTTP_AUTHORIZATION=f"Bearer {key}").json()
    node = answer["ExamplePosterize"]
    assert node["python_module"] == "custom_nodes.example" and node["category"] == "image/postprocessing"
    assert node["display_name"] == "Posterize (example)" and node["output_node"] is False
    assert node["output"] == ["IMAGE"] and node["output_name"] == ["posterized"]
    assert node["input"]["required"]["levels"] == ["INT", {"default": 4, "min": 2, "max": 64, "step": 1}]
    everything = client.get("/object_info", HTTP_AUTHORIZATION=f"Bearer {key}").json()
    assert {"ExampleInvert", "ExamplePosterize", "KSampler"} <= set(everything)
    stats = client.get("/system_stats", HTTP_AUTHORIZATION=f"Bearer {key}").json()
    assert "example" in stats["system"]["node_plugins"]["loaded"]


def history_of(user: ApiUser, prompt_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry: dict[str, Any] = user.get(f"/history/{prompt_id}").json()
        if entry:
            found: dict[str, Any] = entry[prompt_id]
            return found
        time.sleep(0.2)
    raise TimeoutError(f"prompt {prompt_id} not done")


def picture(user: ApiUser, image: dict[str, str]) -> np.ndarray:
    response = user.get("/view", params=image)
    assert response.status_code == 200
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)


@pytest.mark.live
def test_a_plugin_node_runs_in_a_workflow_on_a_real_worker(alice: ApiUser) -> None:
    graph = txt2img(MODEL, **{"5.width": 128, "5.height": 128})
    graph["10"] = {"class_type": "ExampleInvert", "inputs": {"image": ["8", 0]}}
    graph["11"] = {"class_type": "ExamplePosterize", "inputs": {"image": ["10", 0], "levels": 2}}
    graph["9"]["inputs"]["images"] = ["11", 0]
    graph["12"] = {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "plain"}}
    response = alice.post("/prompt", json={"prompt": graph, "client_id": str(uuid.uuid4())})
    assert response.status_code == 200, response.text
    entry = history_of(alice, response.json()["prompt_id"])
    assert entry["status"]["status_str"] == "success", entry["status"]
    plain = picture(alice, entry["outputs"]["12"]["images"][0])
    styled = picture(alice, entry["outputs"]["9"]["images"][0])
    assert set(np.unique(styled)) <= {0, 255}  # two levels per channel
    assert (styled[plain < 100] == 255).all() and (styled[plain > 155] == 0).all()  # inverted


@pytest.mark.live
def test_a_worker_with_a_broken_plugin_starts_runs_and_reports_it(
    servers: Servers, alice: ApiUser, tmp_path: pathlib.Path
) -> None:
    import redis

    env = {**servers.env, "PYTHONPATH": str(broken_plugins(tmp_path))}
    name = f"plugin-test-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "gpu_worker", "--name", name],
        cwd=settings.BASE_DIR,
        env=env,
        stderr=log.open("wb"),
    )
    connection = redis.Redis.from_url(settings.REDIS_URL)
    try:
        wait_for(lambda: connection.exists(heartbeat_key(name)) == 1, 120, "the worker's heartbeat")
        state = json.loads(connection.get(heartbeat_key(name)) or b"{}")
        plugins = state["node_plugins"]
        assert set(plugins["broken"]) == {"exploding", "halfway"}
        assert plugins["loaded"]["example"] == ["ExampleInvert", "ExamplePosterize"]
        assert worker.poll() is None  # still up, serving its pools
        stats = requests.get(f"{alice.base_url}/system_stats", headers=alice.headers, timeout=30).json()
        assert stats["system"]["node_plugins"]["broken"]["exploding"] == "RuntimeError: boom at import"
    finally:
        stop(worker)
    assert "node plugin exploding skipped: RuntimeError: boom at import" in log.read_text()

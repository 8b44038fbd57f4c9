"""ComfyUI clients against real processes (daphne, a gpu_worker on the built-in model, Redis):
the flow of ComfyUI's script_examples with `websocket-client`, as they use it, and the ways a
client may carry the API key."""

from __future__ import annotations

import io
import json
import struct
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import websocket  # websocket-client, as ComfyUI's script_examples use it
from django.conf import settings
from PIL import Image

from tests.browser_support import off_the_browser_loop
from tests.comfy_support import txt2img
from tests.conftest import ApiUser

pytestmark = pytest.mark.live

MODEL = settings.ATELIER_DEFAULT_MODEL


class ComfyClient:
    """ComfyUI's websockets_api_example.py, with only the address changed (a base URL that
    carries the key, for clients that take nothing but an address)."""

    def __init__(
        self, base_url: str, client_id: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or str(uuid.uuid4())
        self.headers = headers or {}
        self.ws = websocket.WebSocket()
        ws_url = self.base_url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        self.ws.connect(ws_url, header=[f"{k}: {v}" for k, v in self.headers.items()])
        self.ws.settimeout(120)

    def queue_prompt(self, prompt: dict[str, Any], **extra: Any) -> dict[str, Any]:
        body = {"prompt": prompt, "client_id": self.client_id, **extra}
        response = requests.post(f"{self.base_url}/prompt", json=body, headers=self.headers, timeout=30)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def get(self, path: str, **params: str) -> requests.Response:
        query = f"?{urlencode(params)}" if params else ""
        return requests.get(f"{self.base_url}{path}{query}", headers=self.headers, timeout=30)

    def messages_until_done(self, prompt_id: str) -> tuple[list[dict[str, Any]], list[bytes]]:
        texts: list[dict[str, Any]] = []
        frames: list[bytes] = []
        while True:
            out = self.ws.recv()
            if isinstance(out, str):
                message = json.loads(out)
                texts.append(message)
                data = message.get("data", {})
                if (
                    message["type"] == "executing"
                    and data.get("node") is None
                    and data.get("prompt_id") == prompt_id
                ):
                    return texts, frames
            else:
                frames.append(out)

    def get_images(self, prompt_id: str) -> dict[str, list[bytes]]:
        history = self.get(f"/history/{prompt_id}").json()[prompt_id]
        found: dict[str, list[bytes]] = {}
        for node_id, output in history["outputs"].items():
            for image in output.get("images", []):
                data = self.get(
                    "/view", filename=image["filename"], subfolder=image["subfolder"], type=image["type"]
                )
                assert data.status_code == 200
                found.setdefault(node_id, []).append(data.content)
        return found

    def close(self) -> None:
        self.ws.close()


def test_the_websockets_api_example_runs_with_a_key_in_the_base_url(alice: ApiUser) -> None:
    client = ComfyClient(f"{alice.base_url}/comfy/{alice.key}")
    try:
        first = json.loads(client.ws.recv())
        assert first["type"] == "status" and first["data"]["sid"] == client.client_id
        graph = txt2img(MODEL, **{"5.batch_size": 2})
        queued = client.queue_prompt(graph, extra_data={"preview_method": "auto"})
        prompt_id = queued["prompt_id"]
        texts, frames = client.messages_until_done(prompt_id)
        images = client.get_images(prompt_id)
    finally:
        client.close()
    kinds = [m["type"] for m in texts]
    assert "execution_start" in kinds and "execution_cached" in kinds
    assert kinds.index("execution_start") < kinds.index("execution_success") < len(kinds) - 1
    executing = [m["data"]["node"] for m in texts if m["type"] == "executing"]
    assert executing[-1] is None and {"3", "8", "9"} <= set(executing)
    progress = [m["data"] for m in texts if m["type"] == "progress"]
    assert progress and progress[-1]["value"] == progress[-1]["max"] == 4 and progress[-1]["node"] == "3"
    # progress_state (newer ComfyUI): the sampler seen running, then every node finished.
    states = [m["data"] for m in texts if m["type"] == "progress_state"]
    assert all(s["prompt_id"] == prompt_id for s in states)
    assert any(s["nodes"].get("3", {}).get("state") == "running" for s in states)
    last = states[-1]["nodes"]
    assert {"3", "8", "9"} <= set(last) and {n["state"] for n in last.values()} == {"finished"}
    assert last["3"]["value"] == last["3"]["max"] == 4
    executed = [m["data"] for m in texts if m["type"] == "executed"]
    assert [e["node"] for e in executed] == ["9"] and len(executed[0]["output"]["images"]) == 2
    assert frames and all(struct.unpack(">II", f[:8]) == (1, 1) and f[8:10] == b"\xff\xd8" for f in frames)
    assert len(images["9"]) == 2
    picture = Image.open(io.BytesIO(images["9"][0]))
    assert picture.size == (64, 64)
    assert json.loads(picture.text["prompt"])["3"]["class_type"] == "KSampler"  # type: ignore[attr-defined]
    generation = alice.get(f"/api/v1/generations/{prompt_id}").json()
    assert generation["kind"] == "workflow" and generation["status"] == "succeeded"
    assert len(generation["images"]) == 2  # in My images
    history = alice.get(f"/history/{prompt_id}").json()[prompt_id]
    assert history["status"]["status_str"] == "success" and history["status"]["completed"] is True
    assert history["prompt"][1] == prompt_id and history["prompt"][4] == ["9"]


def test_a_bearer_header_and_a_token_parameter_work_too(alice: ApiUser, bob: ApiUser) -> None:
    client = ComfyClient(alice.base_url, headers=alice.headers)
    watcher = ComfyClient(bob.base_url + "/api", headers=bob.headers)  # another user's, at /api/ws
    try:
        client.ws.recv()
        watcher.ws.recv()
        watcher.ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        assert json.loads(watcher.ws.recv())["type"] == "feature_flags"
        first = client.queue_prompt(txt2img(MODEL, **{"3.seed": 4}))["prompt_id"]
        client.messages_until_done(first)
        prompt_id = client.queue_prompt(txt2img(MODEL, **{"3.seed": 5}))["prompt_id"]
        texts, frames = client.messages_until_done(prompt_id)
        assert frames == []  # no previews unless asked, as ComfyUI's default
        cached = next(m["data"] for m in texts if m["type"] == "execution_cached")
        assert {"5", "6", "7"} <= set(cached["nodes"])  # same size and texts: not encoded again
        assert "6" not in [m["data"]["node"] for m in texts if m["type"] == "executing"]
        with_token = requests.get(
            f"{alice.base_url}/api/history/{prompt_id}?{urlencode({'token': alice.key})}", timeout=30
        )
        assert with_token.status_code == 200 and prompt_id in with_token.json()
        assert requests.get(f"{alice.base_url}/history/{prompt_id}", timeout=30).status_code == 401
        assert bob.get(f"/history/{prompt_id}").json() == {}
        watcher.ws.settimeout(0.5)
        seen = []
        try:
            while True:
                seen.append(json.loads(watcher.ws.recv()))
        except websocket.WebSocketTimeoutException:
            pass
        assert all(m["type"] == "status" for m in seen)  # nothing of alice's prompt
    finally:
        client.close()
        watcher.close()


def test_an_interrupt_stops_the_users_running_prompt_within_a_step(alice: ApiUser) -> None:
    client = ComfyClient(alice.base_url, headers=alice.headers)
    try:
        client.ws.recv()
        graph = txt2img(MODEL, **{"5.width": 512, "5.height": 512, "3.steps": 150})
        prompt_id = client.queue_prompt(graph)["prompt_id"]
        while True:
            message = client.ws.recv()
            if isinstance(message, str) and json.loads(message)["type"] == "progress":
                break
        response = alice.post("/interrupt", json={"prompt_id": prompt_id})
        assert response.status_code == 200
        texts, _ = client.messages_until_done(prompt_id)
    finally:
        client.close()
    interrupted = [m["data"] for m in texts if m["type"] == "execution_interrupted"]
    assert interrupted and interrupted[0]["node_id"] == "3" and interrupted[0]["node_type"] == "KSampler"
    done = alice.wait_until_done(prompt_id)
    assert done["status"] == "canceled" and done["step"] < 150
    history = alice.get(f"/history/{prompt_id}").json()[prompt_id]
    assert history["status"]["status_str"] == "error"


def test_img2img_hires_fix_and_preview_run_on_the_worker(alice: ApiUser) -> None:
    source = io.BytesIO()
    Image.new("RGB", (96, 64), (20, 200, 40)).save(source, format="PNG")
    uploaded = alice.post("/upload/image", files={"image": ("green.png", source.getvalue(), "image/png")})
    assert uploaded.status_code == 200, uploaded.text
    graph = txt2img(MODEL, **{"3.denoise": 0.5, "3.latent_image": ["10", 0]})
    graph["10"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["11", 0], "vae": ["4", 2]}}
    graph["11"] = {"class_type": "LoadImage", "inputs": {"image": uploaded.json()["name"]}}
    graph["12"] = {
        "class_type": "LatentUpscaleBy",
        "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact", "scale_by": 1.5},
    }
    graph["13"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "model": ["4", 0],
            "add_noise": "enable",
            "noise_seed": 3,
            "steps": 6,
            "cfg": 5.0,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["12", 0],
            "start_at_step": 2,
            "end_at_step": 10000,
            "return_with_leftover_noise": "disable",
        },
    }
    graph["14"] = {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["4", 2]}}
    graph["15"] = {
        "class_type": "ImageScaleBy",
        "inputs": {"image": ["14", 0], "upscale_method": "lanczos", "scale_by": 0.5},
    }
    graph["16"] = {"class_type": "PreviewImage", "inputs": {"images": ["15", 0]}}
    response = alice.post("/prompt", json={"prompt": graph})
    assert response.status_code == 200, response.text
    prompt_id = response.json()["prompt_id"]
    done = alice.wait_until_done(prompt_id)
    assert done["status"] == "succeeded", done
    history = alice.get(f"/history/{prompt_id}").json()[prompt_id]
    saved, preview = history["outputs"]["9"]["images"][0], history["outputs"]["16"]["images"][0]
    assert preview["type"] == "temp" and saved["type"] == "output"
    output = Image.open(io.BytesIO(alice.get("/view?" + urlencode(saved)).content))
    assert output.size == (96, 64)  # the upload's size: img2img keeps it
    small = Image.open(io.BytesIO(alice.get("/view?" + urlencode(preview)).content))
    # 1.5x the latent, then halved (a size whole in latent pixels of 8 and of 16, the built-in VAE's)
    assert small.size == (72, 48)
    assert len(done["images"]) == 1  # previews are not kept in My images


def test_a_node_that_fails_at_run_time_is_an_execution_error_and_costs_nothing(alice: ApiUser) -> None:
    from billing.models import BillingAccount
    from generations.models import Upload
    from generations.storage import delete_content

    source = io.BytesIO()
    Image.new("RGB", (64, 64), (20, 20, 200)).save(source, format="PNG")
    uploaded = alice.post(
        "/upload/image", files={"image": ("blue.png", source.getvalue(), "image/png")}
    ).json()
    graph = txt2img(MODEL, **{"3.denoise": 0.6, "3.latent_image": ["10", 0]})
    graph["10"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["11", 0], "vae": ["4", 2]}}
    graph["11"] = {"class_type": "LoadImage", "inputs": {"image": uploaded["name"]}}
    upload = Upload.objects.get(pk=uploaded["name"].removesuffix(".png"))
    delete_content(upload.file)  # gone between submission and run
    balance = BillingAccount.objects.get(user=alice.user).balance
    client = ComfyClient(alice.base_url, headers=alice.headers)
    try:
        client.ws.recv()
        with alice.events() as events:
            events.next()
            prompt_id = client.queue_prompt(graph)["prompt_id"]
            texts, _ = client.messages_until_done(prompt_id)
            failed = events.until(prompt_id, {"generation.failed", "generation.succeeded"})[-1]
    finally:
        client.close()
    error = next(m["data"] for m in texts if m["type"] == "execution_error")
    assert error["node_id"] == "11" and error["node_type"] == "LoadImage" and error["prompt_id"] == prompt_id
    assert failed["type"] == "generation.failed" and failed["error"]["code"] == "input_missing"
    history = alice.get(f"/history/{prompt_id}").json()[prompt_id]
    assert history["status"]["status_str"] == "error"
    account = BillingAccount.objects.get(user=alice.user)
    assert (account.balance, account.held) == (balance, 0)


def test_the_websocket_image_example_gets_pngs_while_its_node_runs(alice: ApiUser) -> None:
    """websockets_api_example_ws_images.py: SaveImageWebsocket's images arrive as binary frames
    between its ``executing`` and the next one."""
    graph = txt2img(MODEL, **{"5.batch_size": 2})
    graph["save_image_websocket_node"] = {"class_type": "SaveImageWebsocket", "inputs": {"images": ["8", 0]}}
    del graph["9"]
    client = ComfyClient(alice.base_url, headers=alice.headers)
    try:
        client.ws.recv()
        prompt_id = client.queue_prompt(graph)["prompt_id"]
        output_images: dict[str, list[bytes]] = {}
        current_node = ""
        while True:
            out = client.ws.recv()
            if isinstance(out, str):
                message = json.loads(out)
                if message["type"] == "executing":
                    data = message["data"]
                    if data["prompt_id"] == prompt_id:
                        if data["node"] is None:
                            break
                        current_node = data["node"]
            elif current_node == "save_image_websocket_node":
                output_images.setdefault(current_node, []).append(out[8:])
    finally:
        client.close()
    pictures = [Image.open(io.BytesIO(data)) for data in output_images["save_image_websocket_node"]]
    assert [(p.format, p.size) for p in pictures] == [("PNG", (64, 64))] * 2


def test_a_published_comfyui_client_library_works_unmodified(alice: ApiUser) -> None:
    """comfy-api-simplified from PyPI: HTTP Basic credentials (the password is the API key), its
    own workflow wrapper with node titles, queueing, waiting on the socket, history and /view."""
    from comfy_api_simplified import ComfyApiWrapper, ComfyWorkflowWrapper  # type: ignore[import-untyped]

    api = ComfyApiWrapper(alice.base_url, user="atelier", password=alice.key)
    graph = txt2img(MODEL)
    for node_id, node in graph.items():
        node["_meta"] = {"title": {"9": "Save Image", "6": "Positive", "3": "Sampler"}.get(node_id, node_id)}
    workflow = ComfyWorkflowWrapper(graph)
    workflow.set_node_param("Positive", "text", "two green squares")
    workflow.set_node_param("Sampler", "seed", 77)
    # The client calls asyncio.run().
    images = off_the_browser_loop(api.queue_and_wait_images, workflow, "Save Image", timeout=300)
    assert len(images) == 1
    picture = Image.open(io.BytesIO(next(iter(images.values()))))
    assert picture.size == (64, 64)
    assert "CheckpointLoaderSimple" in api.get_object_info("CheckpointLoaderSimple")
    assert api.get_queue() == {"queue_running": [], "queue_pending": []}
    assert api.get_embeddings() == []
    bad = ComfyApiWrapper(alice.base_url, user="atelier", password="not.a-key")
    with pytest.raises(Exception, match="401"):
        bad.get_system_stats()

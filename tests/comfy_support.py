"""ComfyUI graphs in the API format, as clients send them (the script_examples' txt2img)."""

from __future__ import annotations

import copy
import io
from typing import Any

from PIL import Image

TXT2IMG: dict[str, Any] = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "cfg": 7.0,
            "denoise": 1,
            "latent_image": ["5", 0],
            "model": ["4", 0],
            "negative": ["7", 0],
            "positive": ["6", 0],
            "sampler_name": "euler",
            "scheduler": "normal",
            "seed": 8566257,
            "steps": 4,
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "MODEL"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"batch_size": 1, "height": 64, "width": 64}},
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {"clip": ["4", 1], "text": "a red circle on a blue background"},
    },
    "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "blurry"}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}


def txt2img(model: str, **changes: Any) -> dict[str, Any]:
    """The txt2img graph on `model`; ``changes`` maps "node.input" to a new value."""
    graph = copy.deepcopy(TXT2IMG)
    graph["4"]["inputs"]["ckpt_name"] = model
    for key, value in changes.items():
        node, _, name = key.partition(".")
        graph[node]["inputs"][name] = value
    return graph


def saved_image(user: Any, graph: dict[str, Any], node: str = "9") -> Image.Image:
    """Run ``graph`` through POST /prompt as ``user`` (an ApiUser) and fetch the first image its
    SaveImage ``node`` wrote, through /history and /view."""
    response = user.post("/prompt", json={"prompt": graph})
    assert response.status_code == 200, response.text
    prompt_id = response.json()["prompt_id"]
    assert user.wait_until_done(prompt_id)["status"] == "succeeded"
    saved = user.get(f"/history/{prompt_id}").json()[prompt_id]["outputs"][node]["images"][0]
    return Image.open(io.BytesIO(user.get("/view", params=saved).content)).convert("RGB")

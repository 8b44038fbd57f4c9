"""ComfyUI's preview frames on a real server and worker, with `websocket-client`: a client that
announces ``supports_preview_metadata`` in its ``feature_flags`` message gets type-4 frames
(PREVIEW_IMAGE_WITH_METADATA: the node and prompt they come from, then the JPEG); one that does
not gets ComfyUI's plain type-1 frames."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import pytest
from django.conf import settings
from PIL import Image

from tests.comfy_support import txt2img
from tests.conftest import ApiUser
from tests.test_comfy_live import ComfyClient

pytestmark = pytest.mark.live

MODEL = settings.ATELIER_DEFAULT_MODEL


def run_with_previews(client: ComfyClient, seed: int) -> tuple[str, list[bytes]]:
    graph = txt2img(MODEL, **{"3.seed": seed})
    prompt_id = client.queue_prompt(graph, extra_data={"preview_method": "auto"})["prompt_id"]
    _, frames = client.messages_until_done(prompt_id)
    return prompt_id, frames


def read_type_4(frame: bytes) -> tuple[dict[str, Any], bytes]:
    """ComfyUI's PREVIEW_IMAGE_WITH_METADATA: event 4, the metadata's length, the metadata, the image."""
    event, length = struct.unpack(">II", frame[:8])
    assert event == 4
    metadata: dict[str, Any] = json.loads(frame[8 : 8 + length])
    return metadata, frame[8 + length :]


def test_a_client_announcing_preview_metadata_gets_type_4_frames_and_others_type_1(alice: ApiUser) -> None:
    modern = ComfyClient(alice.base_url, headers=alice.headers)
    plain = ComfyClient(alice.base_url, headers=alice.headers)
    try:
        modern.ws.recv(), plain.ws.recv()  # status
        flags = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
        modern.ws.send(json.dumps(flags))
        answer = json.loads(modern.ws.recv())
        assert answer["type"] == "feature_flags" and answer["data"]["supports_preview_metadata"] is True
        assert alice.get("/features").json()["supports_preview_metadata"] is True
        with_metadata, frames_4 = run_with_previews(modern, 11)
        without, frames_1 = run_with_previews(plain, 12)
    finally:
        modern.close()
        plain.close()

    assert frames_4 and frames_1
    for frame in frames_4:
        metadata, image = read_type_4(frame)
        assert metadata["prompt_id"] == with_metadata
        assert metadata["node_id"] == metadata["display_node_id"] == metadata["real_node_id"] == "3"
        assert metadata["image_type"] == "image/jpeg"
        assert Image.open(io.BytesIO(image)).format == "JPEG"
    for frame in frames_1:
        assert struct.unpack(">II", frame[:8]) == (1, 1)  # PREVIEW_IMAGE, JPEG
        assert Image.open(io.BytesIO(frame[8:])).format == "JPEG"
    assert without != with_metadata

"""ComfyUI's HTTP API through the Django test client: what /prompt queues and charges, what it
refuses (ComfyUI's 400 shapes, nothing stored or held), and each user seeing only their own."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from PIL import Image

from accounts.models import User
from accounts.services import api_key_create
from billing.credits import account_for
from billing.models import BillingAccount, CreditEntry, EntryKind
from generations.models import Generation, GenerationStatus
from tests.comfy_support import txt2img

pytestmark = pytest.mark.django_db

MODEL = settings.ATELIER_DEFAULT_MODEL


def client_for(username: str) -> tuple[Client, User]:
    user = User.objects.create_user(username, password="x")
    _, key = api_key_create(user=user)
    client = Client()
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client, user


@pytest.fixture
def alice() -> tuple[Client, User]:
    return client_for("alice")


def post_prompt(client: Client, body: Any, prefix: str = "") -> Any:
    return client.post(f"{prefix}/prompt", body, content_type="application/json")


def nothing_stored(user: User) -> None:
    assert not Generation.objects.filter(user=user).exists()
    assert not CreditEntry.objects.filter(account__user=user, kind=EntryKind.HOLD).exists()


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_it_queues_a_workflow_as_a_generation_and_holds_its_price(
    alice: tuple[Client, User], prefix: str
) -> None:
    client, user = alice
    prompt_id = str(uuid.uuid4())
    body = {"prompt": txt2img(MODEL), "client_id": "abc", "prompt_id": prompt_id, "extra_data": {"x": 1}}
    response = post_prompt(client, body, prefix)
    assert response.status_code == 200, response.content
    answer = response.json()
    assert (
        answer["prompt_id"] == prompt_id and answer["node_errors"] == {} and isinstance(answer["number"], int)
    )
    generation = Generation.objects.get(pk=prompt_id)
    assert generation.kind == "workflow" and generation.status == GenerationStatus.QUEUED
    assert generation.workflow["client_id"] == "abc" and generation.workflow["outputs_to_execute"] == ["9"]
    assert generation.prompt == "a red circle on a blue background" and generation.negative_prompt == "blurry"
    assert generation.credits_held == generation.credits_per_image >= 1
    assert account_for(user).held == generation.credits_held
    listed = client.get(f"/api/v1/generations/{prompt_id}").json()
    assert listed["kind"] == "workflow"
    assert client.get(f"{prefix}/history/{prompt_id}").json() == {}  # not done yet
    queue = client.get(f"{prefix}/queue").json()
    assert [item[1] for item in queue["queue_pending"]] == [prompt_id] and queue["queue_running"] == []
    assert client.get(f"{prefix}/prompt").json() == {"exec_info": {"queue_remaining": 1}}


def test_the_price_grows_with_pixels_steps_and_batch(alice: tuple[Client, User]) -> None:
    client, _ = alice
    small = post_prompt(client, {"prompt": txt2img(MODEL, **{"5.width": 256, "5.height": 256})}).json()
    big = post_prompt(
        client,
        {"prompt": txt2img(MODEL, **{"5.width": 512, "5.height": 512, "5.batch_size": 2, "3.steps": 8})},
    ).json()
    cost = {g.pk: g.credits_held for g in Generation.objects.all()}
    assert cost[uuid.UUID(big["prompt_id"])] == 8 * cost[uuid.UUID(small["prompt_id"])] * 2


def error_types(response: Any) -> list[str]:
    return [e["type"] for node in response.json()["node_errors"].values() for e in node["errors"]]


@pytest.mark.parametrize(
    ("changes", "node", "kind"),
    [
        ({"4.ckpt_name": "no-such-model"}, "4", "value_not_in_list"),
        ({"3.sampler_name": "not_a_sampler"}, "3", "value_not_in_list"),
        ({"3.steps": 0}, "3", "value_smaller_than_min"),
        ({"3.cfg": "lots"}, "3", "invalid_input_type"),
        ({"3.model": ["4", 1]}, "3", "return_type_mismatch"),
        ({"3.model": ["99", 0]}, "3", "bad_linked_input"),
        ({"3.model": ["4", 7]}, "3", "bad_linked_input"),
        ({"5.width": 100_000}, "5", "value_bigger_than_max"),
        ({"5.width": 8192}, "5", "value_bigger_than_max"),  # beyond the model's own limit
        ({"5.batch_size": 64}, "5", "value_bigger_than_max"),
        ({"3.steps": 5000}, "3", "value_bigger_than_max"),
    ],
)
def test_a_graph_that_cannot_run_is_a_400_with_node_errors_and_nothing_is_stored(
    alice: tuple[Client, User], changes: dict[str, Any], node: str, kind: str
) -> None:
    client, user = alice
    response = post_prompt(client, {"prompt": txt2img(MODEL, **changes)})
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert node in body["node_errors"] and kind in error_types(response)
    assert body["node_errors"][node]["dependent_outputs"] == ["9"]
    nothing_stored(user)


def test_a_missing_required_input_is_named(alice: tuple[Client, User]) -> None:
    client, user = alice
    graph = txt2img(MODEL)
    del graph["3"]["inputs"]["positive"]
    response = post_prompt(client, {"prompt": graph})
    assert response.status_code == 400
    problem = response.json()["node_errors"]["3"]["errors"][0]
    assert problem["type"] == "required_input_missing" and problem["extra_info"]["input_name"] == "positive"
    nothing_stored(user)


def test_a_cycle_is_refused(alice: tuple[Client, User]) -> None:
    client, user = alice
    graph = txt2img(MODEL, **{"5.width": ["3", 0]})
    graph["5"] = {
        "class_type": "LatentUpscale",
        "inputs": {
            "samples": ["3", 0],
            "upscale_method": "bilinear",
            "width": 64,
            "height": 64,
            "crop": "disabled",
        },
    }
    response = post_prompt(client, {"prompt": graph})
    assert response.status_code == 400
    assert "dependency_cycle" in error_types(response)
    nothing_stored(user)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({}, "no_prompt"),
        ({"prompt": {}}, "no_prompt"),
        ({"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}, "invalid_prompt"),
        ({"prompt": {"1": {"inputs": {}}}}, "invalid_prompt"),
        ({"prompt": {"1": {"class_type": "EmptyLatentImage", "inputs": {}}}}, "prompt_no_outputs"),
        (
            {"prompt": {str(i): {"class_type": "EmptyLatentImage", "inputs": {}} for i in range(10_000)}},
            "invalid_prompt",
        ),
        ({"prompt": txt2img(MODEL), "prompt_id": "not-a-uuid"}, "invalid_prompt_id"),
        ({"prompt": txt2img(MODEL), "prompt_id": str(uuid.uuid4()).upper()}, "invalid_prompt_id"),
    ],
)
def test_malformed_prompts_get_comfyuis_top_level_error(
    alice: tuple[Client, User], body: dict[str, Any], kind: str
) -> None:
    client, user = alice
    response = post_prompt(client, body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == kind
    nothing_stored(user)


def test_malformed_json_is_a_400(alice: tuple[Client, User]) -> None:
    client, user = alice
    response = client.post("/prompt", "{not json", content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_prompt"
    nothing_stored(user)


def test_short_credits_are_a_402_and_nothing_is_queued(alice: tuple[Client, User]) -> None:
    client, user = alice
    BillingAccount.objects.filter(pk=account_for(user).pk).update(balance=0)
    response = post_prompt(client, {"prompt": txt2img(MODEL)})
    assert response.status_code == 402
    assert response.json()["error"]["code"] == response.json()["error"]["type"] == "insufficient_credits"
    assert not Generation.objects.filter(user=user).exists()


def test_object_info_lists_the_core_nodes_with_the_users_models(alice: tuple[Client, User]) -> None:
    client, _ = alice
    info = client.get("/object_info").json()
    for name in (
        "CheckpointLoaderSimple",
        "CLIPTextEncode",
        "EmptyLatentImage",
        "KSampler",
        "VAEDecode",
        "SaveImage",
        "PreviewImage",
        "LoadImage",
        "KSamplerAdvanced",
    ):
        assert name in info
    loader = info["CheckpointLoaderSimple"]
    assert MODEL in loader["input"]["required"]["ckpt_name"][0]
    assert loader["output"] == ["MODEL", "CLIP", "VAE"] and loader["category"] == "loaders"
    assert info["SaveImage"]["output_node"] is True
    sampler = client.get("/api/object_info/KSampler").json()
    assert list(sampler) == ["KSampler"]
    assert "euler" in sampler["KSampler"]["input"]["required"]["sampler_name"][0]
    assert sampler["KSampler"]["input_order"]["required"][:2] == ["model", "seed"]
    assert client.get("/object_info/NoSuchNode").json() == {}


def png(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 30, 30, 255) if mode == "RGBA" else (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def test_uploads_become_loadimage_options_and_are_viewable_only_by_their_owner(
    alice: tuple[Client, User],
) -> None:
    client, _ = alice
    response = client.post("/upload/image", {"image": io.BytesIO(png()), "type": "input"})
    assert response.status_code == 200, response.content
    name = response.json()["name"]
    assert response.json()["type"] == "input" and response.json()["subfolder"] == ""
    options = client.get("/object_info/LoadImage").json()["LoadImage"]["input"]["required"]["image"][0]
    assert name in options
    view = client.get("/view", {"filename": name, "type": "input"})
    assert view.status_code == 200 and view["Content-Type"] == "image/png"
    webp = client.get("/view", {"filename": name, "type": "input", "preview": "webp;90"})
    assert webp["Content-Type"] == "image/webp" and Image.open(io.BytesIO(webp.content)).format == "WEBP"
    jpeg = client.get("/view", {"filename": f"{name} [input]", "preview": "jpeg;80", "channel": "rgb"})
    assert jpeg["Content-Type"] == "image/jpeg"
    assert client.get("/view", {"filename": name, "type": "input", "preview": "gif;9"}).status_code == 400
    other, _ = client_for("mallory")
    assert other.get("/view", {"filename": name, "type": "input"}).status_code == 404
    assert (
        name not in other.get("/object_info/LoadImage").json()["LoadImage"]["input"]["required"]["image"][0]
    )
    mask = io.BytesIO(png(mode="RGBA"))
    masked = client.post("/upload/mask", {"image": mask, "original_ref": f'{{"filename": "{name}"}}'})
    assert masked.status_code == 200, masked.content
    picture = Image.open(
        io.BytesIO(
            b"".join(
                client.get("/view", {"filename": masked.json()["name"], "type": "input"}).streaming_content
                if False
                else [client.get("/view", {"filename": masked.json()["name"], "type": "input"}).content]
            )
        )
    )
    assert picture.mode == "RGBA" and picture.size == (64, 48)


def test_an_upload_that_is_not_an_image_is_refused(alice: tuple[Client, User]) -> None:
    client, user = alice
    response = client.post("/upload/image", {"image": io.BytesIO(b"not an image")})
    assert response.status_code == 400
    assert not user.uploads.exists()


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"filename": "../etc/passwd"}, 400),
        ({"filename": "/etc/passwd"}, 400),
        ({"filename": "x.png", "subfolder": "../.."}, 403),
        ({"filename": "x.png", "subfolder": "/abs"}, 403),
        ({"filename": "x.png", "subfolder": "a/../../b"}, 403),
        ({"filename": f"ComfyUI_{uuid.uuid4().hex}_00001_.png"}, 404),
        ({"filename": "x.png", "type": "secret"}, 400),
    ],
)
def test_view_refuses_paths_outside_the_users_files(
    alice: tuple[Client, User], params: dict[str, str], status: int
) -> None:
    client, _ = alice
    assert client.get("/view", params).status_code == status


def test_each_user_sees_only_their_own_queue_and_can_stop_only_their_own(alice: tuple[Client, User]) -> None:
    client, _ = alice
    mine = post_prompt(client, {"prompt": txt2img(MODEL)}).json()["prompt_id"]
    other, _ = client_for("bob")
    assert other.get("/queue").json() == {"queue_running": [], "queue_pending": []}
    assert other.get(f"/history/{mine}").json() == {}
    assert other.post("/queue", {"delete": [mine]}, content_type="application/json").status_code == 200
    assert other.post("/queue", {"clear": True}, content_type="application/json").status_code == 200
    assert Generation.objects.get(pk=mine).status == GenerationStatus.QUEUED
    assert client.post("/queue", {"delete": [mine]}, content_type="application/json").status_code == 200
    assert Generation.objects.get(pk=mine).status == GenerationStatus.CANCELED
    history = client.get(f"/history/{mine}").json()
    assert history[mine]["status"]["status_str"] == "error"
    assert account_for(Generation.objects.get(pk=mine).user).held == 0


def test_the_small_routes_answer_as_comfyui_does(alice: tuple[Client, User]) -> None:
    client, _ = alice
    stats = client.get("/system_stats").json()
    assert {"os", "python_version", "comfyui_version"} <= set(stats["system"]) and stats["devices"]
    assert client.get("/models").json() == ["checkpoints", "loras"]
    assert MODEL in client.get("/models/checkpoints").json()
    assert client.get("/models/nope").status_code == 404
    assert client.get("/embeddings").json() == []
    assert isinstance(client.get("/api/features").json(), dict)
    assert Client().get("/prompt").status_code == 401


def test_history_forgets_what_the_user_deletes(alice: tuple[Client, User]) -> None:
    client, _ = alice
    ids = [post_prompt(client, {"prompt": txt2img(MODEL)}).json()["prompt_id"] for _ in range(2)]
    client.post("/queue", {"clear": True}, content_type="application/json")  # finished (canceled)
    assert set(client.get("/history").json()) == set(ids)
    assert list(client.get("/history", {"max_items": 1}).json()) == [ids[1]]
    client.post("/history", {"delete": [ids[0]]}, content_type="application/json")
    assert list(client.get("/history").json()) == [ids[1]]
    other, _ = client_for("eve")
    other.post("/history", {"clear": True}, content_type="application/json")
    assert list(client.get("/history").json()) == [ids[1]]
    client.post("/history", {"clear": True}, content_type="application/json")
    assert client.get("/history").json() == {} and client.get(f"/history/{ids[1]}").json() == {}

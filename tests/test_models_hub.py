"""`manage.py models add NAME org/name[@revision]`: a diffusers repo downloaded with the real
huggingface_hub client from a hub (here a stand-in process on this machine, tests/hub_server.py,
reached through HF_ENDPOINT), only the files the pipeline needs; refusals leave nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError

from accounts.models import User
from core.model_catalog import BUILTIN_WEIGHTS
from generations.model_hub import parse_hub_id, pipeline_files
from generations.models import Generation, InstalledModel
from generations.registry import all_models
from scripts.private_redis import free_port
from tests.api_support import Api
from tests.conftest import ROOT
from tests.test_models_command import files_under, models, run_in_a_worker

pytestmark = pytest.mark.django_db


class Hub:
    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = root, log

    def publish(self, repo: str, revision: str, source: Path = BUILTIN_WEIGHTS) -> Path:
        folder = self.root / repo / revision
        shutil.copytree(source, folder)
        return folder

    def requests(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("ATELIER_MODELS_DIR", str(folder))
    return folder


def start_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Iterator[Hub]:
    root, log, port = tmp_path / "hub", tmp_path / "hub.log", free_port()
    root.mkdir()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "hub_server.py"), str(root), str(port), str(log), *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no cache of this machine's user
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield Hub(root, log)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def hub(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    yield from start_hub(tmp_path, monkeypatch)


@pytest.fixture
def breaking_hub(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    # Past the client's first 10 MiB chunk of the 18 MiB UNet, the only file that long.
    yield from start_hub(tmp_path, monkeypatch, "--break-first-after", str(12 << 20))


def add(source: str, name: str = "hubby") -> str:
    return models("add", name, source, "--family", "sd15", "--pool", "extra", "--default-side", "128")


def commit_of(revision: str) -> str:
    return hashlib.sha1(revision.encode()).hexdigest()  # noqa: S324 - as the hub server names them


def test_a_hub_model_is_offered_and_a_worker_runs_a_job_on_it(hub: Hub, models_dir: Path) -> None:
    published = hub.publish("atelier/tiny", "main")
    (published / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle" * 100)
    (published / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"half" * 100)
    (published / "tiny-pruned.ckpt").write_bytes(b"checkpoint" * 100)
    said = add("atelier/tiny")
    assert "added hubby (sd15, pool extra" in said
    landed = models_dir / "hubby" / "tiny"
    expected = sorted(str(p.relative_to(BUILTIN_WEIGHTS)) for p in BUILTIN_WEIGHTS.rglob("*") if p.is_file())
    expected.remove("manifest.json")  # at the root beside model_index.json: not part of the pipeline
    got = sorted(str(p.relative_to(landed)) for p in landed.rglob("*") if p.is_file())
    assert got == expected
    for name in expected:
        assert (landed / name).read_bytes() == (BUILTIN_WEIGHTS / name).read_bytes()
    assert not any(".bin" in line or ".ckpt" in line or "fp16" in line for line in hub.requests())
    assert files_under(models_dir)[0] == "hubby"  # no .downloads or staging left over
    row = InstalledModel.objects.get(name="hubby")
    assert row.source == f"atelier/tiny@{commit_of('main')}"

    user = User.objects.create_user(username="maker", password="pw-long-enough-1")
    listed = {m["id"]: m for m in Api(user).get("/api/v1/models").json()["data"]}
    assert listed["hubby"]["pool"] == "extra"
    response = Api(user).post("/api/v1/generations", {"prompt": "a red circle", "model": "hubby", "steps": 2})
    assert response.status_code == 202, response.content
    job = Generation.objects.get(id=response.json()["id"])
    assert run_in_a_worker(job) == [str(landed.resolve())]


def test_a_revision_pin_is_honoured(hub: Hub, models_dir: Path) -> None:
    hub.publish("atelier/tiny", "main")
    pinned = hub.publish("atelier/tiny", "v1")
    index = json.loads((pinned / "model_index.json").read_text())
    (pinned / "model_index.json").write_text(json.dumps({**index, "_atelier_revision": "v1"}))
    add("atelier/tiny@v1", "by-tag")
    add(f"atelier/tiny@{commit_of('v1')}", "by-commit")
    add("atelier/tiny", "by-default")
    for name in ("by-tag", "by-commit"):
        index = json.loads((models_dir / name / "tiny" / "model_index.json").read_text())
        assert index["_atelier_revision"] == "v1"
        assert InstalledModel.objects.get(name=name).source == f"atelier/tiny@{commit_of('v1')}"
    assert "_atelier_revision" not in (models_dir / "by-default" / "tiny" / "model_index.json").read_text()
    with pytest.raises(CommandError, match=r"\[hub_revision_not_found\] atelier/tiny has no revision 'v9'"):
        add("atelier/tiny@v9", "missing")
    assert not (models_dir / "missing").exists()


def test_a_broken_download_resumes_where_it_stopped(breaking_hub: Hub, models_dir: Path) -> None:
    breaking_hub.publish("atelier/tiny", "main")
    with pytest.raises(CommandError, match=r"\[hub_network_error\] .* run the command again to resume"):
        add("atelier/tiny")
    assert not InstalledModel.objects.exists() and not (models_dir / "hubby").exists()
    assert {p.split("/")[0] for p in files_under(models_dir)} == {".downloads"}  # the partial files wait
    add("atelier/tiny")  # the same command again
    unet = "unet/diffusion_pytorch_model.safetensors"
    fetched = [
        line.split(" ")[2] for line in breaking_hub.requests() if line.startswith("GET") and unet in line
    ]
    assert fetched[0] == "-" and fetched[1].startswith("bytes=") and fetched[1] != "bytes=0-"  # resumed
    landed = models_dir / "hubby" / "tiny"
    assert (landed / unet).read_bytes() == (BUILTIN_WEIGHTS / unet).read_bytes()
    assert files_under(models_dir)[0] == "hubby"  # the partial download is gone


def test_an_unknown_repo_is_refused_and_leaves_nothing(hub: Hub, models_dir: Path) -> None:
    with pytest.raises(CommandError, match=r"\[hub_repo_not_found\] no repo nobody/nothing at http://127"):
        add("nobody/nothing")
    assert files_under(models_dir) == [] and not InstalledModel.objects.exists()
    assert "hubby" not in all_models()


def test_a_repo_without_safetensors_is_refused_and_leaves_nothing(hub: Hub, models_dir: Path) -> None:
    published = hub.publish("atelier/old", "main")
    (published / "unet" / "diffusion_pytorch_model.safetensors").rename(
        published / "unet" / "diffusion_pytorch_model.bin"
    )
    with pytest.raises(
        CommandError, match=r"\[hub_no_safetensors\] atelier/old: unet/ has weights only as .bin"
    ):
        add("atelier/old")
    assert files_under(models_dir) == [] and not InstalledModel.objects.exists()
    assert [line for line in hub.requests() if "/resolve/" in line] == []  # refused before downloading


def test_network_errors_and_offline_machines_get_clear_messages(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(
        CommandError, match=r"\[hub_network_error\] could not download atelier/tiny from http"
    ):
        add("atelier/tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CommandError, match=r"\[hub_offline\] HF_HUB_OFFLINE is set"):
        add("atelier/tiny")
    assert files_under(models_dir) == [] and not InstalledModel.objects.exists()


def test_what_counts_as_a_hub_id_and_which_files_a_pipeline_needs(tmp_path: Path) -> None:
    assert parse_hub_id("org/name") == ("org/name", "main")
    assert parse_hub_id("org/name@v1.0") == ("org/name", "v1.0")
    assert parse_hub_id("/srv/models/x") is None and parse_hub_id("https://host/x.safetensors") is None
    assert parse_hub_id(str(BUILTIN_WEIGHTS.relative_to(Path.cwd()))) is None  # an existing local path
    files = ["model_index.json", "README.md", "v1.ckpt", "unet/config.json", "unet/w.safetensors",
             "unet/w.fp16.safetensors", "unet/w.bin", "vae/config.json", "vae/w.fp16.safetensors",
             "tokenizer/vocab.json", "tokenizer/merges.txt", "text_encoder/flax_model.msgpack",
             "text_encoder/model.safetensors"]  # fmt: skip
    assert pipeline_files(files, "r") == [
        "model_index.json",
        "text_encoder/model.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/w.safetensors",
        "vae/config.json",
        "vae/w.fp16.safetensors",  # only a variant: that is what there is
    ]
    with pytest.raises(Exception, match="hub_not_diffusers"):
        pipeline_files(["unet/w.safetensors"], "r")

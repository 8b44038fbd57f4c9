"""`manage.py models add|list|remove`: models operators add beside ATELIER_MODELS, from a local
directory or file, or downloaded over HTTPS (a real server process on this machine) with resume
and checksum; Create, /api/v1/models and the workers follow."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.models import User
from core.model_catalog import BUILTIN_WEIGHTS
from generations.management.commands.models import human_size
from generations.models import Generation, GenerationStatus, Image, InstalledModel
from generations.registry import all_models, known_pools
from generations.selectors import weights_size
from generations.workers import erase_heartbeat, write_heartbeat
from scripts.private_redis import free_port
from tests.api_support import Api
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("ATELIER_MODELS_DIR", str(folder))
    return folder


def models(*args: str) -> str:
    out = io.StringIO()
    call_command("models", *args, stdout=out)
    return out.getvalue()


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_an_added_directory_is_offered_by_create_and_the_api(models_dir: Path) -> None:
    said = models("add", "tiny-copy", str(BUILTIN_WEIGHTS), "--family", "sd15", "--pool", "extra")
    assert "added tiny-copy (sd15, pool extra" in said and "gpu_worker --pools extra" in said
    copied = models_dir / "tiny-copy" / "weights"
    assert (copied / "model_index.json").read_bytes() == (BUILTIN_WEIGHTS / "model_index.json").read_bytes()
    user = User.objects.create_user(username="maker", password="pw-long-enough-1")
    listed = {m["id"]: m for m in Api(user).get("/api/v1/models").json()["data"]}
    assert listed["tiny-copy"]["pool"] == "extra" and listed["tiny-copy"]["family"] == "sd15"
    assert "atelier-demo" in listed  # ATELIER_MODELS' (here the built-in) model is still there
    browser = Client()
    browser.force_login(user)
    assert 'value="tiny-copy"' in browser.get("/create/").content.decode()
    assert "extra" in known_pools()


def run_in_a_worker(job: Generation) -> list[str]:
    """Run the queued job in a worker's runner; that it succeeded with its image, and the model
    paths the worker then holds."""
    from gpu_worker.runner import GenerationRunner

    runner = GenerationRunner(name="added-model-runner")
    try:
        runner.run_one(str(job.id))
    finally:
        runner.publisher.close()
    job.refresh_from_db()
    assert job.status == GenerationStatus.SUCCEEDED
    assert Image.objects.filter(generation=job).count() == 1
    return runner.cache.paths()


def test_a_worker_runs_a_job_on_an_added_model(models_dir: Path) -> None:
    models(
        "add",
        "tiny-copy",
        str(BUILTIN_WEIGHTS),
        "--family",
        "sd15",
        "--pool",
        "extra",
        "--default-side",
        "128",
    )
    user = User.objects.create_user(username="maker", password="pw-long-enough-1")
    response = Api(user).post(
        "/api/v1/generations", {"prompt": "a red circle", "model": "tiny-copy", "steps": 2}
    )
    assert response.status_code == 202, response.content
    job = Generation.objects.get(id=response.json()["id"])
    assert job.queue_name.startswith("gen.extra.") and (job.width, job.height) == (128, 128)
    assert run_in_a_worker(job) == [str((models_dir / "tiny-copy" / "weights").resolve())]


def test_a_single_file_needs_its_config_and_refusals_leave_nothing(models_dir: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "dreamy.safetensors"
    checkpoint.write_bytes(b"\0" * 4096)
    with pytest.raises(CommandError, match="give --config"):
        models("add", "dreamy", str(checkpoint), "--family", "sd15", "--pool", "extra")
    with pytest.raises(CommandError, match="not a diffusers directory"):
        models("add", "folder", str(tmp_path), "--family", "sd15", "--pool", "extra")
    with pytest.raises(CommandError, match="no such file"):
        models("add", "missing", str(tmp_path / "nope"), "--family", "sd15", "--pool", "extra")
    assert not InstalledModel.objects.exists() and files_under(models_dir) == []
    models(
        "add", "dreamy", str(checkpoint), "--family", "sdxl", "--pool", "xl", "--config", str(BUILTIN_WEIGHTS)
    )
    spec = all_models()["dreamy"]
    assert spec.path == str(models_dir / "dreamy" / "dreamy.safetensors") and spec.config == str(
        BUILTIN_WEIGHTS
    )
    assert spec.default_side == 1024  # the family's size, not SD 1.5's


def test_an_added_pool_keeps_its_job_timeout(models_dir: Path, settings: Any) -> None:
    from generations.queues import rq_queue

    settings.ATELIER_POOL_TIMEOUTS = {"extra": 1800.0}
    models("add", "tiny-copy", str(BUILTIN_WEIGHTS), "--family", "sd15", "--pool", "extra")
    job = rq_queue("gen.extra.standard").enqueue("builtins.print", "x")
    other = rq_queue("gen.other.standard").enqueue("builtins.print", "x")
    try:
        assert (job.timeout, other.timeout) == (1800, settings.ATELIER_JOB_TIMEOUT)
    finally:
        job.delete()
        other.delete()


def test_names_that_exist_are_refused(models_dir: Path) -> None:
    with pytest.raises(CommandError, match="already configured by ATELIER_MODELS"):
        models("add", "atelier-demo", str(BUILTIN_WEIGHTS), "--family", "sd15", "--pool", "tiny")
    models("add", "tiny-copy", str(BUILTIN_WEIGHTS), "--family", "sd15", "--pool", "extra")
    with pytest.raises(CommandError, match="already installed"):
        models("add", "tiny-copy", str(BUILTIN_WEIGHTS), "--family", "sd15", "--pool", "extra")
    with pytest.raises(CommandError, match="comes from ATELIER_MODELS"):
        models("remove", "atelier-demo")


def test_list_shows_pool_family_size_and_the_workers_holding_it(models_dir: Path) -> None:
    models("add", "tiny-copy", str(BUILTIN_WEIGHTS), "--family", "sd15", "--pool", "extra")
    path = str(models_dir / "tiny-copy" / "weights")
    write_heartbeat(
        "gpu-7", {"pools": ["extra"], "models": [path], "warm_models": []}, ["extra"], at=time.time()
    )
    try:
        lines = models("list").splitlines()
    finally:
        erase_heartbeat("gpu-7", ["extra"])
    assert lines[0] == f"models folder: {models_dir}"
    [added] = [line.split("\t") for line in lines if line.startswith("tiny-copy\t")]
    assert added[1:4] == ["pool extra", "sd15", human_size(weights_size(BUILTIN_WEIGHTS))]
    assert added[3].endswith(" MiB")
    assert added[4] == str(BUILTIN_WEIGHTS) and added[5] == "gpu-7"
    [builtin] = [line.split("\t") for line in lines if line.startswith("atelier-demo\t")]
    assert builtin[4:] == ["built-in", "no worker"]


def test_remove_forgets_the_model_and_deletes_its_files(models_dir: Path) -> None:
    models("add", "tiny-copy", str(BUILTIN_WEIGHTS), "--family", "sd15", "--pool", "extra")
    assert models("remove", "tiny-copy") == "removed tiny-copy\n"
    assert "tiny-copy" not in all_models() and not (models_dir / "tiny-copy").exists()
    user = User.objects.create_user(username="maker", password="pw-long-enough-1")
    response = Api(user).post("/api/v1/generations", {"prompt": "a boat", "model": "tiny-copy"})
    assert response.status_code == 400
    with pytest.raises(CommandError, match="no installed model"):
        models("remove", "tiny-copy")


# --- downloads over HTTPS, from a real server process -------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class Server:
    def __init__(self, root: Path, log: Path, port: int) -> None:
        self.root, self.log, self.port = root, log, port

    def url(self, name: str) -> str:
        return f"https://127.0.0.1:{self.port}/{name}"

    def requests(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def start_server(tmp_path: Path, certificate: tuple[Path, Path], *extra: str) -> Iterator[Server]:
    root = tmp_path / "served"
    root.mkdir(exist_ok=True)
    port = free_port()
    log = tmp_path / "requests.log"
    command = [sys.executable, str(ROOT / "tests" / "range_server.py"), str(root), str(port)]
    process = subprocess.Popen([*command, str(certificate[0]), str(certificate[1]), str(log), *extra],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield Server(root, log, port)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def server(
    tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Server]:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust the test's own certificate
    yield from start_server(tmp_path, certificate)


@pytest.fixture
def breaking_server(
    tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Server]:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    yield from start_server(tmp_path, certificate, "--break-first-after", str(1 << 20))


def checkpoint_bytes() -> bytes:
    return os.urandom(3 << 20)


def add_url(url: str, sha256: str, name: str = "dreamy") -> str:
    return models(
        "add",
        name,
        url,
        "--sha256",
        sha256,
        "--family",
        "sd15",
        "--pool",
        "extra",
        "--config",
        str(BUILTIN_WEIGHTS),
    )


def test_it_downloads_a_checkpoint_checked_against_its_sha256(server: Server, models_dir: Path) -> None:
    body = checkpoint_bytes()
    (server.root / "dreamy.safetensors").write_bytes(body)
    add_url(server.url("dreamy.safetensors"), hashlib.sha256(body).hexdigest())
    landed = models_dir / "dreamy" / "dreamy.safetensors"
    assert landed.read_bytes() == body
    assert files_under(models_dir) == ["dreamy", "dreamy/dreamy.safetensors"]
    row = InstalledModel.objects.get(name="dreamy")
    assert (row.size_bytes, row.source) == (len(body), server.url("dreamy.safetensors"))
    assert all_models()["dreamy"].path == str(landed)
    assert server.requests() == ["/dreamy.safetensors -"]


def test_a_wrong_sha256_is_refused_and_nothing_is_left_behind(server: Server, models_dir: Path) -> None:
    body = checkpoint_bytes()
    (server.root / "dreamy.safetensors").write_bytes(body)
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(CommandError, match=f"not the expected {wrong}; nothing was kept"):
        add_url(server.url("dreamy.safetensors"), wrong)
    assert files_under(models_dir) == []
    assert not InstalledModel.objects.exists() and "dreamy" not in all_models()


def test_a_broken_download_resumes_where_it_stopped(breaking_server: Server, models_dir: Path) -> None:
    body = checkpoint_bytes()
    (breaking_server.root / "dreamy.safetensors").write_bytes(body)
    digest = hashlib.sha256(body).hexdigest()
    url = breaking_server.url("dreamy.safetensors")
    with pytest.raises(
        CommandError, match=f"broke off after {1 << 20} of {len(body)} bytes; run the command again"
    ):
        add_url(url, digest)
    assert not InstalledModel.objects.exists() and not (models_dir / "dreamy").exists()
    assert (models_dir / ".downloads" / f"{digest}.part").stat().st_size == 1 << 20
    add_url(url, digest)  # the same command again
    assert (models_dir / "dreamy" / "dreamy.safetensors").read_bytes() == body
    assert breaking_server.requests() == ["/dreamy.safetensors -", f"/dreamy.safetensors bytes={1 << 20}-"]
    assert files_under(models_dir) == ["dreamy", "dreamy/dreamy.safetensors"]


def test_urls_must_be_https_with_a_checksum(models_dir: Path) -> None:
    digest = "0" * 64
    with pytest.raises(CommandError, match="only https"):
        add_url("http://127.0.0.1:9/dreamy.safetensors", digest)
    with pytest.raises(CommandError, match="needs --sha256"):
        add_url("https://127.0.0.1:9/dreamy.safetensors", "")
    assert files_under(models_dir) == []


def test_atelier_models_keeps_working(settings: Any, tmp_path: Path) -> None:
    from core.model_catalog import ModelSpec

    copy = tmp_path / "configured"
    shutil.copytree(BUILTIN_WEIGHTS, copy)
    spec = ModelSpec(name="configured", path=str(copy), pool="cfg")
    settings.ATELIER_MODELS = {**settings.ATELIER_MODELS, spec.name: spec}
    models("add", "tiny-copy", str(BUILTIN_WEIGHTS), "--family", "sd15", "--pool", "extra")
    assert {"configured", "atelier-demo", "tiny-copy"} <= set(all_models())
    assert {"cfg", "extra", "tiny"} <= set(known_pools())
    [line] = [line for line in models("list").splitlines() if line.startswith("configured\t")]
    assert line.split("\t")[4] == "ATELIER_MODELS"


def test_the_admin_shows_each_models_pool_family_size_and_holders(models_dir: Path) -> None:
    models("add", "tiny-copy", str(BUILTIN_WEIGHTS), "--family", "sd15", "--pool", "extra")
    path = str(models_dir / "tiny-copy" / "weights")
    write_heartbeat(
        "gpu-9", {"pools": ["extra"], "models": [], "warm_models": [path]}, ["extra"], at=time.time()
    )
    staff = User.objects.create_superuser(username="boss", password="pw-long-enough-1")
    admin = Client()
    admin.force_login(staff)
    try:
        page = admin.get("/admin/models/").content.decode()
    finally:
        erase_heartbeat("gpu-9", ["extra"])
    row = page[page.index("<td>tiny-copy</td>") :].split("</tr>")[0]
    cells = [cell.split("</td>")[0] for cell in row.split("<td>")[1:]]
    assert cells[:3] == ["tiny-copy", "extra", "sd15"]
    assert cells[3].endswith("MB") and cells[5] == "gpu-9 (warm)"
    assert "<td>atelier-demo</td>" in page and "built-in" in page
    assert 'href="/admin/models/"' in admin.get("/admin/").content.decode()
    outsider = Client()
    outsider.force_login(User.objects.create_user(username="nobody", password="pw-long-enough-1"))
    assert outsider.get("/admin/models/").status_code == 302  # to the admin's login


def test_each_machine_finds_the_weights_in_its_own_models_folder(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models("add", "tiny-copy", str(BUILTIN_WEIGHTS), "--family", "sd15", "--pool", "extra")
    elsewhere = tmp_path / "mounted-elsewhere"
    shutil.move(models_dir, elsewhere)  # the same volume, mounted at another place on a worker
    monkeypatch.setenv("ATELIER_MODELS_DIR", str(elsewhere))
    assert all_models()["tiny-copy"].path == str(elsewhere / "tiny-copy" / "weights")

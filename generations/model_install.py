"""Models operators add and remove (`manage.py models`): weights into the models folder, a row
that every web process and worker reads (generations/registry.py).

The models folder is ATELIER_MODELS_DIR (default: ATELIER_DATA_DIR/models). Workers load a model
from the path its row names, so on several machines that folder is one shared volume mounted at
the same place everywhere (docs/deploy.md). A model is copied or downloaded next to its final
place and renamed into it, so no worker ever sees half a model.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction

from core.model_catalog import FAMILIES, SINGLE_FILE_SUFFIXES, is_single_file
from generations.model_download import download
from generations.model_hub import download_from_hub, parse_hub_id
from generations.models import InstalledModel
from generations.registry import models_dir
from generations.selectors import weights_size

# Defaults by family where ModelSpec's (512 px, SD 1.5's) would be wrong.
FAMILY_OPTIONS: dict[str, dict[str, int | float]] = {
    "sdxl": {"default_side": 1024, "max_side": 1536},
    "sdxl-turbo": {"default_side": 512, "default_steps": 1, "default_guidance": 0.0},
    "sd3": {"default_side": 1024, "max_side": 1536, "size_step": 16},
    "sd2": {"default_side": 768},
}


class ModelInstallError(Exception):
    """A model that cannot be added or removed, with the sentence an operator reads."""


def check_name(name: str, family: str) -> None:
    if name in settings.ATELIER_MODELS:
        raise ModelInstallError(f"{name!r} is already configured by ATELIER_MODELS")
    if InstalledModel.objects.filter(name=name).exists():
        raise ModelInstallError(f"{name!r} is already installed; remove it first")
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ModelInstallError(f"{name!r}: a model's name is letters, digits, '-', '_' and '.'")
    if family not in FAMILIES:
        raise ModelInstallError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")


def check_weights(path: Path, config: str) -> None:
    """What the worker can load: a diffusers directory, or a checkpoint file with its family's
    diffusers directory as `config`."""
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelInstallError(f"{path} is not a diffusers directory (no model_index.json)")
        if config:
            raise ModelInstallError("--config is only for single-file checkpoints")
        return
    if not is_single_file(path.name):
        raise ModelInstallError(f"{path}: a single file must be one of {', '.join(SINGLE_FILE_SUFFIXES)}")
    if not config:
        raise ModelInstallError(f"{path.name} is a single checkpoint: give --config, its family's directory")
    if not (Path(config) / "model_index.json").is_file():
        raise ModelInstallError(f"--config {config} is not a diffusers directory (no model_index.json)")


def install_model(
    *,
    name: str,
    source: str,
    family: str,
    pool: str,
    config: str = "",
    sha256: str = "",
    options: dict[str, int | float] | None = None,
) -> InstalledModel:
    """Copy (a local directory or file) or download (an https URL, checked against `sha256`; a hub
    id `org/name[@revision]`) the weights into the models folder and record the model. Nothing is
    left behind on a refusal."""
    check_name(name, family)
    target_dir = models_dir() / name
    if target_dir.exists():
        raise ModelInstallError(f"{target_dir} already exists; remove it or choose another name")
    staging = models_dir() / f".adding-{name}-{uuid.uuid4().hex[:8]}"
    try:
        if source.startswith("http://"):
            raise ModelInstallError("only https URLs: weights are code a worker runs")
        if source.startswith("https://"):
            if len(sha256) != 64:
                raise ModelInstallError("a URL needs --sha256: the 64 hex digits the download must match")
            filename = source.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
            if not is_single_file(filename) or not config:
                raise ModelInstallError(
                    f"a URL is a single checkpoint ({', '.join(SINGLE_FILE_SUFFIXES)}) with --config, "
                    "its family's diffusers directory"
                )
            check_weights(Path(config), "")
            # The partial download lives outside the staging folder, so a second run resumes it.
            partial = models_dir() / ".downloads" / f"{sha256.lower()}.part"
            staging.mkdir(parents=True)
            download(source, sha256=sha256, partial=partial, target=staging / filename)
            weights_name = filename
        elif (hub := parse_hub_id(source)) is not None:
            repo, revision = hub
            if config or sha256:
                raise ModelInstallError("a hub id is a diffusers repo: no --config or --sha256")
            weights_name = repo.rsplit("/", 1)[-1]
            staging.mkdir(parents=True)
            commit = download_from_hub(
                repo, revision, downloads=models_dir() / ".downloads", target=staging / weights_name
            )
            source = f"{repo}@{commit}"  # what was installed, whatever branch or tag named it
        else:
            local = Path(source).expanduser().resolve()
            if not local.exists():
                raise ModelInstallError(f"{source}: no such file or directory")
            check_weights(local, config)
            staging.parent.mkdir(parents=True, exist_ok=True)
            if local.is_dir():
                shutil.copytree(local, staging / local.name)
            else:
                staging.mkdir()
                shutil.copy2(local, staging / local.name)
            weights_name = local.name
        check_weights(staging / weights_name, config)
        os.replace(staging, target_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            (models_dir() / ".downloads").rmdir()  # only when no partial download waits there
        raise
    weights = target_dir / weights_name
    fields = {**FAMILY_OPTIONS.get(family, {}), **(options or {})}
    try:
        with transaction.atomic():
            return InstalledModel.objects.create(
                name=name,
                path=str(weights.relative_to(models_dir())),
                family=family,
                pool=pool,
                config=relative_if_inside(config),
                size_bytes=weights_size(weights) or 0,
                source=source,
                sha256=sha256.lower(),
                options=fields,
            )
    except BaseException:
        shutil.rmtree(target_dir, ignore_errors=True)
        raise


def relative_if_inside(path: str) -> str:
    if not path:
        return ""
    absolute = Path(path).resolve()
    base = models_dir().resolve()
    return str(absolute.relative_to(base)) if absolute.is_relative_to(base) else str(absolute)


def remove_model(*, name: str, keep_files: bool = False) -> InstalledModel:
    """Forget the model, and delete its weights when they are in the models folder."""
    if name in settings.ATELIER_MODELS:
        raise ModelInstallError(f"{name!r} comes from ATELIER_MODELS: change that setting instead")
    row = InstalledModel.objects.filter(name=name).first()
    if row is None:
        raise ModelInstallError(f"no installed model {name!r}")
    row.delete()
    folder = models_dir() / name
    if not keep_files and folder.is_dir() and not Path(row.path).is_absolute():
        shutil.rmtree(folder)
    return row

"""Models from a Hugging Face hub, the hub's outbound calls of `manage.py models add`:

    python manage.py models add dreamy org/name[@revision] --family sd15 --pool extra

Only what a diffusers pipeline loads is fetched (model_index.json and, in the component folders,
configs, tokenizer files and .safetensors weights; no .bin/.ckpt/.onnx/.msgpack, no root-level
single-file checkpoints, no fp16/ema variants beside the full weights). The client library
(`huggingface_hub.snapshot_download`) resumes a download that broke off: its partial files stay
in the models folder's `.downloads/` until the same command is run again.

HF_ENDPOINT (a mirror, or a hub inside the network) and HF_TOKEN (private or gated repos) are read
when the command runs; HF_HUB_OFFLINE=1 refuses at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".onnx", ".msgpack", ".h5", ".gguf")
COMPONENT_SUFFIXES = (".json", ".txt", ".model", ".safetensors")  # configs, tokenizers, weights
VARIANT = re.compile(r"\.(fp16|fp32|bf16|ema|non_ema)\.safetensors$")
ETAG_TIMEOUT_SECONDS = 30


class HubError(Exception):
    """A hub download refused or failed: a code an operator can search for, and what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code


def parse_hub_id(source: str) -> tuple[str, str] | None:
    """`org/name` or `org/name@revision` -> (repo, revision); None for anything else."""
    match = HUB_ID.fullmatch(source)
    if match is None or source.startswith(("/", ".", "~")) or Path(source).exists():
        return None
    return match.group("repo"), match.group("revision") or "main"


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or "https://huggingface.co"


def pipeline_files(files: Iterable[str], repo: str) -> list[str]:
    """The files a diffusers pipeline needs, or a HubError saying why the repo cannot be one."""
    names = sorted(files)
    if "model_index.json" not in names:
        raise HubError("hub_not_diffusers", f"{repo} has no model_index.json: it is not a diffusers pipeline")
    by_folder: dict[str, list[str]] = {}
    for name in names:
        path = PurePosixPath(name)
        if len(path.parts) == 2:  # component folders only: unet/, vae/, text_encoder/ ...
            by_folder.setdefault(path.parts[0], []).append(name)
    chosen = ["model_index.json"]
    for folder, inside in sorted(by_folder.items()):
        weights = [n for n in inside if n.endswith(WEIGHT_SUFFIXES)]
        safe = [n for n in weights if n.endswith(".safetensors")]
        if weights and not safe:
            raise HubError(
                "hub_no_safetensors",
                f"{repo}: {folder}/ has weights only as "
                f"{', '.join(sorted({PurePosixPath(n).suffix for n in weights}))}, not .safetensors; "
                "convert them, or add a local directory instead",
            )
        full = [n for n in safe if not VARIANT.search(n)]
        keep = set(full or safe)
        chosen += [n for n in inside if n.endswith(COMPONENT_SUFFIXES) and (n in keep or n not in safe)]
    if not any(n.endswith(".safetensors") for n in chosen):
        raise HubError("hub_no_safetensors", f"{repo} has no .safetensors weights")
    return chosen


def download_from_hub(repo: str, revision: str, *, downloads: Path, target: Path) -> str:
    """Fetch the pipeline's files of `repo` at `revision` into `target`; the commit it resolved to.

    A refusal (unknown repo or revision, no safetensors, offline) leaves nothing; a download that
    breaks off leaves its partial files under `downloads` for the next attempt."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from requests import RequestException

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        raise HubError(
            "hub_offline",
            "HF_HUB_OFFLINE is set: this machine does not download from a hub; download the repo where "
            "one is reachable and add its directory, or set HF_ENDPOINT to a hub inside your network",
        )
    where, token = endpoint(), os.environ.get("HF_TOKEN") or None
    try:
        info = HfApi(endpoint=where, token=token).model_info(
            repo, revision=revision, timeout=ETAG_TIMEOUT_SECONDS
        )
        commit = info.sha or ""
        wanted = pipeline_files((s.rfilename for s in info.siblings or []), repo)
        folder = downloads / f"hub-{repo.replace('/', '--')}-{commit}"
        snapshot_download(
            repo,
            revision=commit,
            local_dir=folder,
            allow_patterns=wanted,
            endpoint=where,
            token=token,
            etag_timeout=ETAG_TIMEOUT_SECONDS,
        )
    except RevisionNotFoundError as error:
        raise HubError("hub_revision_not_found", f"{repo} has no revision {revision!r} at {where}") from error
    except (RepositoryNotFoundError, GatedRepoError) as error:
        raise HubError(
            "hub_repo_not_found",
            f"no repo {repo} at {where}, and no such local path (a private or gated repo needs HF_TOKEN, "
            "a token that may read it)",
        ) from error
    except OfflineModeIsEnabled as error:
        raise HubError("hub_offline", f"the hub client is in offline mode ({error})") from error
    except (HfHubHTTPError, RequestException, OSError) as error:
        raise HubError(
            "hub_network_error",
            f"could not download {repo} from {where} ({type(error).__name__}); run the command again to "
            "resume, or on a machine without internet download it elsewhere and add the directory",
        ) from error
    target.mkdir(parents=True)
    for name in wanted:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder / name, target / name)
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        downloads.rmdir()  # only when empty
    return commit

"""The LoRA folder (``ATELIER_LORA_DIR``, plus the shipped ones of ``ATELIER_BUILTIN_LORA_DIR``):
which LoRA files there are, by the name ComfyUI's ``lora_name`` takes (the path below the
folder, ``style/pastel.safetensors``), and where one is.

Read by the REST API (validation, ``GET /api/v1/models``), workflows (the loaders' options) and
the worker (loading). A name is only ever looked up in the listing: nothing outside the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

SUFFIX = ".safetensors"


@dataclass(frozen=True)
class LoraRequest:
    """One LoRA asked for by a REST submission: its file name and how strongly to apply it."""

    name: str
    weight: float

    @classmethod
    def of(cls, value: Any) -> LoraRequest:
        return cls(str(value["name"]), float(value["weight"]))


def lora_folder() -> Path:
    return Path(settings.ATELIER_LORA_DIR)


def builtin_folder() -> Path | None:
    """The LoRAs shipped with the repository (``ATELIER_BUILTIN_LORA_DIR``); None when turned off."""
    configured = str(getattr(settings, "ATELIER_BUILTIN_LORA_DIR", "") or "")
    return Path(configured) if configured else None


def files_below(folder: Path | None) -> dict[str, Path]:
    """Every ``.safetensors`` file below the folder by its relative POSIX path (hidden ones left out)."""
    if folder is None or not folder.is_dir():
        return {}
    return {
        path.relative_to(folder).as_posix(): path
        for path in folder.rglob(f"*{SUFFIX}")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    }


def lora_files() -> dict[str, Path]:
    """The shipped LoRAs and the folder's, the folder's winning on a name both have."""
    return files_below(builtin_folder()) | files_below(lora_folder())


def available_loras() -> list[str]:
    """Every LoRA by the name ``lora_name`` takes, sorted."""
    return sorted(lora_files())


def lora_path(name: str) -> Path | None:
    """The file of a listed LoRA; None for any other name (traversal, absolute, missing)."""
    return lora_files().get(name)

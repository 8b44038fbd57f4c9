"""The LoRA folder (``ATELIER_LORA_DIR``): which LoRA files there are, by the name ComfyUI's
``lora_name`` takes (the path below the folder, ``style/pastel.safetensors``), and where one is.

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


def available_loras() -> list[str]:
    """Every ``.safetensors`` file below the folder, by its relative POSIX path, sorted."""
    folder = lora_folder()
    if not folder.is_dir():
        return []
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob(f"*{SUFFIX}")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def lora_path(name: str) -> Path | None:
    """The file of a listed LoRA; None for any other name (traversal, absolute, missing)."""
    if name not in available_loras():
        return None
    return lora_folder() / name

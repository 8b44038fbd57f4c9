"""The shipped weights' manifest: what each file must hash to, how they were made, how they score."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

WEIGHTS = Path(__file__).resolve().parent / "weights"
MANIFEST = WEIGHTS / "manifest.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST.name)


def read(folder: Path = WEIGHTS) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((folder / MANIFEST.name).read_text())
    return manifest


def write(folder: Path, **fields: Any) -> dict[str, Any]:
    """(Re)write the manifest: hashes of every file, keeping fields it already had unless given."""
    path = folder / MANIFEST.name
    manifest: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    manifest.update(fields)
    manifest["files"] = {
        str(p.relative_to(folder)): {"sha256": sha256(p), "bytes": p.stat().st_size}
        for p in model_files(folder)
    }
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def mismatches(folder: Path = WEIGHTS) -> list[str]:
    """Files that are missing, unlisted or differ from the manifest (empty when all is well)."""
    listed = read(folder)["files"]
    present = {str(p.relative_to(folder)) for p in model_files(folder)}
    problems = [f"unlisted: {name}" for name in sorted(present - set(listed))]
    for name, entry in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"missing: {name}")
        elif sha256(path) != entry["sha256"]:
            problems.append(f"changed: {name}")
    return problems

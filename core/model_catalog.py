"""The model registry as configured by ``ATELIER_MODELS``.

Kept free of Django imports so that settings can read it to declare the RQ queues.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

BUILTIN_MODEL = "atelier-demo"
# The built-in model is trained by the project (demo_model/) and its weights ship in the repository.
BUILTIN_WEIGHTS = Path(__file__).resolve().parent.parent / "demo_model" / "weights"
# Prompts it renders well, offered on Create.
BUILTIN_EXAMPLES = (
    "a red circle on a blue background",
    "two small yellow stars in the top left corner on a dark green background",
    "a big purple triangle at the bottom",
    "a sunset over the sea",
    "a house with a tree",
    "a lighthouse at dusk",
)


# Families the worker runs (any diffusers directory whose pipeline is one of these), and "noop",
# which renders flat images without a model (benchmarks of the queue itself).
FAMILIES = ("sd15", "sd2", "sdxl", "sdxl-turbo", "sd3", "noop")

# A model's path may also be one checkpoint file in the original repositories' layout (A1111,
# ComfyUI, Civitai); it is then loaded with the configs of its family's diffusers directory.
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


def is_single_file(path: str) -> bool:
    return path.lower().endswith(SINGLE_FILE_SUFFIXES)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str
    pool: str
    family: str = "sd15"
    # For a single-file `path`: the family's diffusers directory (configs and tokenizers are enough).
    config: str = ""
    min_side: int = 64
    max_side: int = 1024
    default_side: int = 512
    # Width and height are multiples of it: the VAE's factor, times the patch size for SD3's transformer.
    size_step: int = 8
    max_steps: int = 150
    default_steps: int = 20
    default_guidance: float = 7.0
    cost_multiplier: float = 1.0
    builtin: bool = False
    max_batch: int = 4  # images a worker may denoise together for compatible jobs (1 = no batching)
    # Speed options (gpu_worker/speed.py): "" dtype = float16 on CUDA, float32 on the CPU.
    dtype: str = ""
    channels_last: bool = False
    compile: bool = False
    compile_sizes: tuple[tuple[int, int], ...] = ()
    examples: tuple[str, ...] = ()  # prompts the model renders well, offered on Create
    # Another model's name: new jobs run there while this model's circuit is open (if the request
    # allows it), e.g. an SDXL model's Turbo sibling.
    fallback: str = ""
    # The SHA-256 of the weights, for the result cache. Blank: the hash of the directory's
    # manifest.json (which lists every file's SHA-256), if it has one; else no result cache.
    sha256: str = ""


def builtin_model(data_dir: Path | None = None) -> ModelSpec:
    """The trained demo model shipped in the repository (`data_dir` is not needed any more)."""
    return ModelSpec(
        name=BUILTIN_MODEL,
        path=str(BUILTIN_WEIGHTS),
        pool="tiny",
        default_side=256,
        max_side=512,
        builtin=True,
        examples=BUILTIN_EXAMPLES,
        # The judge's best on 40 fixed cases (docs/benchmarks.md): 3 beats 1, 5 and 7 on colour and position.
        default_guidance=3.0,
    )


def parse_models(value: str, data_dir: Path) -> dict[str, ModelSpec]:
    """Parse ``ATELIER_MODELS``.

    Empty: the built-in small model. A JSON list of objects with the ``ModelSpec`` fields, or
    ``name=path`` pairs separated by commas (the pool is then the name). The word ``builtin``
    among them stands for the built-in model.
    """
    value = value.strip()
    if not value:
        spec = builtin_model(data_dir)
        return {spec.name: spec}
    specs: list[ModelSpec] = []
    if value.startswith("["):
        for item in json.loads(value):
            if not isinstance(item, dict) or "name" not in item or "path" not in item:
                raise ValueError("ATELIER_MODELS: each entry needs a name and a path")
            item.setdefault("pool", item["name"])
            if item.get("family", "sd15") not in FAMILIES:
                raise ValueError(f"ATELIER_MODELS: unknown family {item['family']!r}; known: {FAMILIES}")
            item["compile_sizes"] = tuple(tuple(size) for size in item.get("compile_sizes", ()))
            item["examples"] = tuple(item.get("examples", ()))
            if item.get("dtype", "") not in ("", "float16", "bfloat16", "float32"):
                raise ValueError(f"ATELIER_MODELS: unknown dtype {item['dtype']!r}")
            specs.append(checked_source(ModelSpec(**item)))
    else:
        for part in value.split(","):
            part = part.strip()
            if part == "builtin":
                specs.append(builtin_model(data_dir))
                continue
            name, sep, path = part.partition("=")
            if not sep or not name or not path:
                raise ValueError(f"ATELIER_MODELS: expected name=path, got {part!r}")
            specs.append(checked_source(ModelSpec(name=name.strip(), path=path.strip(), pool=name.strip())))
    models = {spec.name: spec for spec in specs}
    for spec in specs:
        if spec.fallback and (spec.fallback not in models or spec.fallback == spec.name):
            raise ValueError(
                f"ATELIER_MODELS: model {spec.name!r} falls back to an unknown model {spec.fallback!r}"
            )
    return models


def content_hash(spec: ModelSpec) -> str:
    """What identifies the model's weights by content ("" when nothing does): the configured
    SHA-256, or the SHA-256 of its manifest of file hashes (the built-in model ships one)."""
    if spec.sha256:
        return spec.sha256.lower()
    return manifest_hash(str(Path(spec.path) / "manifest.json"))


def manifest_hash(path: str) -> str:
    """The SHA-256 of the manifest's file list (its scores and notes may change, the weights not)."""
    try:
        files = json.loads(Path(path).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def checked_source(spec: ModelSpec) -> ModelSpec:
    """A single file needs the configs of its family; a directory carries its own."""
    if is_single_file(spec.path) and not spec.config:
        raise ValueError(
            f"ATELIER_MODELS: model {spec.name!r} is a single-file checkpoint ({spec.path}) and needs a "
            '"config": the diffusers directory of its family (JSON form)'
        )
    if spec.config and not is_single_file(spec.path):
        raise ValueError(
            f"ATELIER_MODELS: model {spec.name!r} has a config but its path is not a single file "
            f"({' or '.join(SINGLE_FILE_SUFFIXES)}): {spec.path}"
        )
    return spec

"""The node registry: core nodes, plugins from the ``atelier.nodes`` entry point group (a broken
one skipped, never fatal), and the web tier's modules staying free of torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from workflows import registry as registry_module
from workflows.registry import Registry, check_node_class, load_plugins, registry
from workflows.schema import object_info_entry

ROOT = Path(__file__).resolve().parent.parent


class Invert:
    """A plugin node, written as a ComfyUI custom node is."""

    CATEGORY = "image/example"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("inverted",)
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {"image": ("IMAGE",), "amount": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0})}
        }

    def invert(self, image: Any, amount: float) -> tuple[Any]:
        return (1.0 - image * amount,)


class GoodPlugin:
    NODE_CLASS_MAPPINGS = {"ExampleInvert": Invert}
    NODE_DISPLAY_NAME_MAPPINGS = {"ExampleInvert": "Invert (example)"}


class FakeEntryPoint:
    def __init__(self, name: str, loaded: Any) -> None:
        self.name = name
        self.loaded = loaded

    def load(self) -> Any:
        if isinstance(self.loaded, Exception):
            raise self.loaded
        return self.loaded


def test_the_core_nodes_are_registered() -> None:
    names = set(registry().classes)
    assert {
        "CheckpointLoaderSimple",
        "CLIPTextEncode",
        "EmptyLatentImage",
        "KSampler",
        "VAEDecode",
        "SaveImage",
    } <= names
    assert {
        "PreviewImage",
        "LoadImage",
        "VAEEncode",
        "KSamplerAdvanced",
        "LatentUpscaleBy",
        "ImageScaleBy",
    } <= names
    assert not registry().broken


def test_a_plugin_registers_nodes_and_a_broken_one_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoFunction:
        RETURN_TYPES = ()

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {}

    class BadPlugin:
        NODE_CLASS_MAPPINGS = {"Broken": NoFunction}

    points = [
        FakeEntryPoint("example", GoodPlugin),
        FakeEntryPoint("crashes", ImportError("no module named nothing")),
        FakeEntryPoint("bad", BadPlugin),
    ]
    monkeypatch.setattr(
        registry_module, "entry_points", lambda group: points if group == "atelier.nodes" else []
    )
    found = Registry()
    load_plugins(found)
    assert list(found.classes) == ["ExampleInvert"]
    assert set(found.broken) == {"crashes", "bad"}
    entry = object_info_entry("ExampleInvert", Invert, found)
    assert entry["display_name"] == "Invert (example)" and entry["python_module"] == "custom_nodes.example"
    assert entry["output_name"] == ["inverted"] and entry["input"]["required"]["image"] == ["IMAGE"]


def test_a_node_class_must_declare_its_function() -> None:
    class Incomplete:
        RETURN_TYPES = ("IMAGE",)
        FUNCTION = "missing"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {}

    with pytest.raises(TypeError, match="FUNCTION"):
        check_node_class("Incomplete", Incomplete)


def test_the_web_tier_validates_and_describes_graphs_without_importing_torch() -> None:
    code = (
        "import django, os, sys;"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup();"
        "import api.comfy_views, workflows.validation, workflows.pricing, workflows.schema;"
        "from workflows.schema import object_info; object_info();"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"

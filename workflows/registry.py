"""The node registry: the core nodes, then every plugin of the ``atelier.nodes`` entry point group.

A plugin is written the way ComfyUI custom nodes are: its entry point names a module (or an
object) with ``NODE_CLASS_MAPPINGS`` and, optionally, ``NODE_DISPLAY_NAME_MAPPINGS``; each class
has ``INPUT_TYPES``, ``RETURN_TYPES``, ``FUNCTION`` and the rest. A plugin that fails to load is
logged and listed in `Registry.broken`, never fatal: the core nodes still work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "atelier.nodes"


@dataclass
class Registry:
    classes: dict[str, type] = field(default_factory=dict)
    display_names: dict[str, str] = field(default_factory=dict)
    modules: dict[str, str] = field(default_factory=dict)  # class name -> python_module
    broken: dict[str, str] = field(default_factory=dict)  # plugin -> why it was skipped
    plugins: dict[str, list[str]] = field(default_factory=dict)  # plugin -> the nodes it added

    def add(self, mappings: Any, display: Any, module: str) -> None:
        if not isinstance(mappings, dict):
            raise TypeError("NODE_CLASS_MAPPINGS must be a dict of name -> class")
        for name, node_class in mappings.items():
            check_node_class(name, node_class)
        for name, node_class in mappings.items():
            self.classes[name] = node_class
            self.modules[name] = module
        if isinstance(display, dict):
            self.display_names.update({str(k): str(v) for k, v in display.items()})


def check_node_class(name: str, node_class: Any) -> None:
    """The attributes every node needs, checked at load so a broken plugin is caught at start."""
    if not isinstance(name, str) or not isinstance(node_class, type):
        raise TypeError(f"{name!r}: a node is a class registered under a string name")
    for attribute in ("INPUT_TYPES", "RETURN_TYPES", "FUNCTION"):
        if not hasattr(node_class, attribute):
            raise TypeError(f"{name}: the node class has no {attribute}")
    declared: Any = node_class
    if not isinstance(declared.INPUT_TYPES(), dict):
        raise TypeError(f"{name}: INPUT_TYPES() must return a dict")
    if not hasattr(declared, declared.FUNCTION):
        raise TypeError(f"{name}: FUNCTION names {declared.FUNCTION!r}, which the class lacks")


def load_plugins(registry: Registry) -> None:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
            mappings = getattr(loaded, "NODE_CLASS_MAPPINGS", None)
            registry.add(
                mappings, getattr(loaded, "NODE_DISPLAY_NAME_MAPPINGS", None), f"custom_nodes.{entry.name}"
            )
            registry.plugins[entry.name] = sorted(mappings or {})
        except (Exception, SystemExit) as exc:  # a plugin calling exit() at import included
            registry.broken[entry.name] = f"{type(exc).__name__}: {exc}"
            log.exception("node plugin %s could not be loaded; skipped", entry.name)


@cache
def registry() -> Registry:
    from workflows.nodes import image_nodes, latent_nodes, loader_nodes, lora_nodes, sampler_nodes

    found = Registry()
    for module in (loader_nodes, lora_nodes, sampler_nodes, latent_nodes, image_nodes):
        found.add(module.NODE_CLASS_MAPPINGS, module.NODE_DISPLAY_NAME_MAPPINGS, "nodes")
    load_plugins(found)
    return found


def plugin_report() -> dict[str, Any]:
    """The plugins found at start: ``{"loaded": {plugin: [nodes]}, "broken": {plugin: why}}``.
    The worker calls it once at start (``ATELIER_WORKFLOW_PLUGIN_REPORT``) and shows the answer in
    its heartbeat; ``/system_stats`` shows the web tier's."""
    found = registry()
    return {"loaded": dict(found.plugins), "broken": dict(found.broken)}


def node_class(name: str) -> type | None:
    return registry().classes.get(name)

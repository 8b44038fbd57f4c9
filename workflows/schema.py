"""Reading a node class's declarations: its inputs (``INPUT_TYPES``), its outputs, and the
``/object_info`` entry that ComfyUI clients read them from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workflows.registry import Registry, registry


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str  # INT, FLOAT, STRING, BOOLEAN, COMBO, or a value type (MODEL, LATENT, ...; "*" any)
    options: tuple[Any, ...] = ()  # a COMBO's choices
    config: dict[str, Any] = field(default_factory=dict)
    required: bool = True

    @property
    def is_widget(self) -> bool:
        """Whether a literal value may stand for it (a widget), as opposed to only a link."""
        return self.type in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")

    def accepts(self, output_type: str) -> bool:
        """Whether an output of ``output_type`` may be linked into this input."""
        if "*" in (self.type, output_type):
            return True
        if self.type == "COMBO":
            return output_type in ("COMBO", "STRING")
        wanted = set(self.type.split(","))
        return not wanted.isdisjoint(output_type.split(","))


def parse_input(name: str, declared: Any, *, required: bool) -> InputSpec:
    """One entry of INPUT_TYPES: ``(TYPE, {config})``, ``([choices], {config})`` or
    ``("COMBO", {"options": [...]})``."""
    if not isinstance(declared, (tuple, list)) or not declared:
        declared = (declared,)
    kind, config = declared[0], declared[1] if len(declared) > 1 and isinstance(declared[1], dict) else {}
    if isinstance(kind, (list, tuple)):
        return InputSpec(name, "COMBO", tuple(kind), dict(config), required)
    if kind == "COMBO":
        return InputSpec(name, "COMBO", tuple(config.get("options", ())), dict(config), required)
    return InputSpec(name, str(kind), (), dict(config), required)


def input_specs(node_class: type) -> dict[str, InputSpec]:
    """Required and optional inputs, in declaration order (hidden ones are filled by the executor)."""
    declared = node_class.INPUT_TYPES()  # type: ignore[attr-defined]
    specs: dict[str, InputSpec] = {}
    for group, required in (("required", True), ("optional", False)):
        for name, value in (declared.get(group) or {}).items():
            specs[name] = parse_input(name, value, required=required)
    return specs


def hidden_inputs(node_class: type) -> dict[str, str]:
    declared = node_class.INPUT_TYPES()  # type: ignore[attr-defined]
    return {str(k): str(v) for k, v in (declared.get("hidden") or {}).items()}


def return_types(node_class: type) -> tuple[str, ...]:
    return tuple(str(t) for t in getattr(node_class, "RETURN_TYPES", ()))


def is_output_node(node_class: type) -> bool:
    return bool(getattr(node_class, "OUTPUT_NODE", False))


def jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def object_info_entry(name: str, node_class: type, found: Registry) -> dict[str, Any]:
    declared = node_class.INPUT_TYPES()  # type: ignore[attr-defined]
    outputs = return_types(node_class)
    entry: dict[str, Any] = {
        "input": jsonable(
            {group: declared[group] for group in ("required", "optional", "hidden") if group in declared}
        ),
        "input_order": {
            group: list(declared[group]) for group in ("required", "optional") if group in declared
        },
        "output": list(outputs),
        "output_is_list": list(getattr(node_class, "OUTPUT_IS_LIST", [False] * len(outputs))),
        "output_name": list(getattr(node_class, "RETURN_NAMES", None) or outputs),
        "name": name,
        "display_name": found.display_names.get(name, name),
        "description": str(getattr(node_class, "DESCRIPTION", "")),
        "python_module": found.modules.get(name, "nodes"),
        "category": str(getattr(node_class, "CATEGORY", "sd")),
        "output_node": is_output_node(node_class),
    }
    for flag in ("DEPRECATED", "EXPERIMENTAL"):
        if getattr(node_class, flag, False):
            entry[flag.lower()] = True
    if hasattr(node_class, "OUTPUT_TOOLTIPS"):
        entry["output_tooltips"] = list(node_class.OUTPUT_TOOLTIPS)
    return entry


def object_info(name: str | None = None) -> dict[str, Any]:
    """``/object_info`` (every node) or ``/object_info/{name}`` (``{}`` for an unknown one)."""
    found = registry()
    names = [name] if name is not None else list(found.classes)
    return {n: object_info_entry(n, found.classes[n], found) for n in names if n in found.classes}

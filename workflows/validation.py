"""A graph in ComfyUI's API format, checked before anything is queued or charged.

The answers are ComfyUI's (COMFYUI_API.md section 1): a top-level ``error`` of type ``no_prompt``,
``invalid_prompt``, ``prompt_no_outputs`` or ``prompt_outputs_failed_validation``, and per node
``node_errors`` with ``required_input_missing``, ``bad_linked_input``, ``return_type_mismatch``,
``invalid_input_type``, ``value_smaller_than_min``, ``value_bigger_than_max``,
``value_not_in_list``, ``custom_validation_failed`` (and ``dependency_cycle``, ours).

Pure: no torch, no database; option lists come from `workflows.scope`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workflows import scope
from workflows.registry import node_class
from workflows.schema import InputSpec, input_specs, is_output_node, return_types


class PromptInvalid(Exception):
    """The graph cannot run: the 400 body is `body`."""

    def __init__(self, kind: str, message: str, details: str = "", node_errors: dict[str, Any] | None = None):
        super().__init__(message)
        self.body = {
            "error": {"type": kind, "message": message, "details": details, "extra_info": {}},
            "node_errors": node_errors or {},
        }


@dataclass
class ValidPrompt:
    prompt: dict[str, dict[str, Any]]  # every node, with its literal inputs converted
    outputs: list[str]  # the output nodes that will run
    node_errors: dict[str, Any] = field(default_factory=dict)  # the outputs left out, and why


def error(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and not isinstance(value[1], bool)
        and isinstance(value[1], int)
    )


def convert(spec: InputSpec, value: Any) -> tuple[Any, dict[str, Any] | None]:
    """A literal input converted to its type and checked against its bounds and choices."""
    config = jsonable_config(spec)
    try:
        if spec.type == "INT":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("not an integer")
            value = int(value)
        elif spec.type == "FLOAT":
            if isinstance(value, bool):
                raise ValueError("not a number")
            value = float(value)
        elif spec.type == "STRING":
            if not isinstance(value, (str, int, float)):
                raise ValueError("not a string")
            value = str(value)
        elif spec.type == "BOOLEAN":
            if not isinstance(value, bool):
                raise ValueError("not a boolean")
    except (TypeError, ValueError) as exc:
        details = f"{spec.name}, {value!r}, {exc}"
        message = f"Failed to convert an input value to a {spec.type} value"
        return value, error(
            "invalid_input_type",
            message,
            details,
            input_name=spec.name,
            input_config=config,
            received_value=value,
        )
    if spec.type in ("INT", "FLOAT"):
        low, high = spec.config.get("min"), spec.config.get("max")
        if low is not None and value < low:
            message = f"Value {value} smaller than min of {low}"
            return value, error(
                "value_smaller_than_min",
                message,
                spec.name,
                input_name=spec.name,
                input_config=config,
                received_value=value,
            )
        if high is not None and value > high:
            message = f"Value {value} bigger than max of {high}"
            return value, error(
                "value_bigger_than_max",
                message,
                spec.name,
                input_name=spec.name,
                input_config=config,
                received_value=value,
            )
    if spec.type == "COMBO" and value not in spec.options:
        shown = list(spec.options)[:20]
        details = f"{spec.name}: {value!r} not in {shown}"
        return value, error(
            "value_not_in_list",
            "Value not in list",
            details,
            input_name=spec.name,
            input_config=config,
            received_value=value,
        )
    return value, None


def jsonable_config(spec: InputSpec) -> list[Any]:
    kind: Any = list(spec.options) if spec.type == "COMBO" else spec.type
    return [kind, {k: v for k, v in spec.config.items() if isinstance(v, (str, int, float, bool))}]


class Checker:
    def __init__(self, prompt: dict[str, dict[str, Any]]) -> None:
        self.prompt = prompt
        self.converted: dict[str, dict[str, Any]] = {}
        self.valid: dict[str, bool] = {}
        self.errors: dict[str, list[dict[str, Any]]] = {}
        self.visiting: set[str] = set()

    def check(self, node_id: str) -> bool:
        if node_id in self.valid:
            return self.valid[node_id]
        self.visiting.add(node_id)
        ok = self.check_inputs(node_id)
        self.visiting.discard(node_id)
        self.valid[node_id] = ok
        return ok

    def fail(self, node_id: str, problem: dict[str, Any]) -> bool:
        self.errors.setdefault(node_id, []).append(problem)
        return False

    def check_inputs(self, node_id: str) -> bool:
        node = self.prompt[node_id]
        cls = node_class(node["class_type"])
        assert cls is not None  # unknown classes were refused before
        given = node["inputs"]
        ok, values = True, {}
        for name, spec in input_specs(cls).items():
            if name not in given:
                if spec.required:
                    ok = self.fail(
                        node_id,
                        error("required_input_missing", "Required input is missing", name, input_name=name),
                    )
                continue
            value = given[name]
            if is_link(value):
                ok = self.check_link(node_id, spec, value) and ok
                values[name] = [str(value[0]), value[1]]
                continue
            if isinstance(value, list) or not spec.is_widget:
                details = (
                    f"{name}: {value!r}" if spec.is_widget else f"{name} takes a link to a {spec.type} output"
                )
                ok = self.fail(
                    node_id,
                    error(
                        "bad_linked_input",
                        "Bad linked input, must be a length-2 list of [string, int]",
                        details,
                        input_name=name,
                    ),
                )
                continue
            converted, problem = convert(spec, value)
            if problem is not None:
                ok = self.fail(node_id, problem)
            values[name] = converted
        validate = getattr(cls, "VALIDATE_INPUTS", None)
        if ok and callable(validate):
            literal = {k: v for k, v in values.items() if not is_link(v)}
            outcome = validate(**literal)
            if outcome is not True:
                ok = self.fail(
                    node_id,
                    error("custom_validation_failed", "Custom validation failed for node", f"{outcome}"),
                )
        self.converted[node_id] = {**given, **values}
        return ok

    def check_link(self, node_id: str, spec: InputSpec, link: list[Any]) -> bool:
        source_id, index = str(link[0]), link[1]
        source = self.prompt.get(source_id)
        if source is None:
            details = f"{spec.name} links to node #{source_id}, which is not in the prompt"
            return self.fail(
                node_id,
                error("bad_linked_input", "Bad linked input: no such node", details, input_name=spec.name),
            )
        outputs = return_types(node_class(source["class_type"]) or object)
        if not 0 <= index < len(outputs):
            details = f"{spec.name} links to output {index} of node #{source_id}, which has {len(outputs)}"
            return self.fail(
                node_id,
                error("bad_linked_input", "Bad linked input: no such output", details, input_name=spec.name),
            )
        received = outputs[index]
        if not spec.accepts(received):
            details = f"{spec.name}, received_type({received}) mismatch input_type({spec.type})"
            return self.fail(
                node_id,
                error(
                    "return_type_mismatch",
                    "Return type mismatch between linked nodes",
                    details,
                    input_name=spec.name,
                    input_config=jsonable_config(spec),
                    received_type=received,
                    linked_node=[source_id, index],
                ),
            )
        if source_id in self.visiting:
            details = f"{spec.name} links back to node #{source_id}"
            return self.fail(
                node_id, error("dependency_cycle", "Dependency cycle detected", details, input_name=spec.name)
            )
        return self.check(source_id)

    def ancestors(self, node_id: str, seen: set[str] | None = None) -> set[str]:
        seen = set() if seen is None else seen
        if node_id in seen or node_id not in self.prompt:
            return seen
        seen.add(node_id)
        for value in self.prompt[node_id]["inputs"].values():
            if is_link(value):
                self.ancestors(str(value[0]), seen)
        return seen


def validate_prompt(prompt: Any) -> ValidPrompt:
    """The graph checked (raises `PromptInvalid` with ComfyUI's 400 body)."""
    if not isinstance(prompt, dict) or not prompt:
        raise PromptInvalid("no_prompt", "No prompt provided", "No prompt provided")
    limit = scope.current().max_nodes
    if len(prompt) > limit:
        raise PromptInvalid(
            "invalid_prompt",
            f"The prompt has {len(prompt)} nodes; at most {limit} are allowed.",
            f"{len(prompt)} nodes",
        )
    graph: dict[str, dict[str, Any]] = {}
    for raw_id, node in prompt.items():
        node_id = str(raw_id)
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise PromptInvalid(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'",
            )
        if node_class(node["class_type"]) is None:
            message = f"Cannot execute because node {node['class_type']} does not exist."
            raise PromptInvalid("invalid_prompt", message, f"Node ID '#{node_id}'")
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            raise PromptInvalid(
                "invalid_prompt", "A node's inputs must be an object.", f"Node ID '#{node_id}'"
            )
        graph[node_id] = {**node, "inputs": inputs}
    outputs = [
        node_id for node_id, node in graph.items() if is_output_node(node_class(node["class_type"]) or object)
    ]
    if not outputs:
        raise PromptInvalid("prompt_no_outputs", "Prompt has no outputs", "")
    checker = Checker(graph)
    good = [node_id for node_id in outputs if checker.check(node_id)]
    node_errors = node_errors_of(checker, graph, outputs)
    if not good:
        raise PromptInvalid(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", "", node_errors
        )
    converted = {
        node_id: {**graph[node_id], "inputs": checker.converted.get(node_id, graph[node_id]["inputs"])}
        for node_id in graph
    }
    return ValidPrompt(prompt=converted, outputs=good, node_errors=node_errors)


def node_errors_of(checker: Checker, graph: dict[str, dict[str, Any]], outputs: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for node_id, problems in checker.errors.items():
        dependent = [output for output in outputs if node_id in checker.ancestors(output)]
        found[node_id] = {
            "errors": problems,
            "dependent_outputs": dependent,
            "class_type": graph[node_id]["class_type"],
        }
    return found

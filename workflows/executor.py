"""Runs a validated graph: each needed node once, after the nodes it links to, with the typed
values they returned; outputs of earlier jobs are reused when a node and everything upstream of
it are the same (same checkpoint and text: no re-encoding), as ComfyUI's cache does.

The worker calls `run_prompt` (through ``ATELIER_WORKFLOW_EXECUTOR``) with a runtime that is
also the listener of node events: ``cached(nodes)``, ``executing(node)``, ``executed(node, ui)``.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from workflows import runtime
from workflows.registry import node_class
from workflows.schema import hidden_inputs, is_output_node
from workflows.validation import is_link

log = logging.getLogger(__name__)


class Listener(Protocol):
    def cached(self, nodes: list[str]) -> None: ...

    def executing(self, node_id: str) -> None: ...

    def executed(self, node_id: str, ui: dict[str, Any]) -> None: ...


class OutputCache:
    """Node outputs by signature, least recently used dropped first (kept by the worker)."""

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self.entries: OrderedDict[str, tuple[Any, ...]] = OrderedDict()

    def get(self, key: str) -> tuple[Any, ...] | None:
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        return None

    def put(self, key: str, value: tuple[Any, ...]) -> None:
        self.entries[key] = value
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def clear(self) -> None:
        self.entries.clear()


_shared: OutputCache | None = None


def shared_cache() -> OutputCache:
    """The worker process's cache of node outputs, across its jobs."""
    global _shared
    if _shared is None:
        from django.conf import settings

        _shared = OutputCache(settings.ATELIER_WORKFLOW_CACHE_ENTRIES)
    return _shared


@dataclass
class Outcome:
    status: str  # success, interrupted, error
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # output node -> its ui
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    node_id: str | None = None
    node_type: str | None = None
    code: str = ""
    exception_message: str = ""
    exception_type: str = ""
    traceback: list[str] = field(default_factory=list)
    exception: BaseException | None = None  # for the worker to tell transient errors from the rest


def execution_order(prompt: dict[str, dict[str, Any]], outputs: list[str]) -> list[str]:
    """Every node the outputs need, each after the nodes it links to (depth first, iterative)."""
    order: list[str] = []
    done: set[str] = set()
    for output in outputs:
        stack: list[tuple[str, bool]] = [(output, False)]
        while stack:
            node_id, expanded = stack.pop()
            if node_id in done:
                continue
            if expanded:
                done.add(node_id)
                order.append(node_id)
                continue
            stack.append((node_id, True))
            for value in reversed(list(prompt[node_id]["inputs"].values())):
                if is_link(value) and str(value[0]) not in done:
                    stack.append((str(value[0]), False))
    return order


def signatures(prompt: dict[str, dict[str, Any]], order: list[str]) -> dict[str, str | None]:
    """A key per node for the output cache, from its class, its literal inputs, what its
    ``IS_CHANGED`` says and its ancestors' keys; None where it must always run."""
    keys: dict[str, str | None] = {}
    for node_id in order:
        node = prompt[node_id]
        cls = node_class(node["class_type"])
        if cls is None or is_output_node(cls) or getattr(cls, "NOT_IDEMPOTENT", False):
            keys[node_id] = None
            continue
        parts: dict[str, Any] = {}
        ok = True
        for name, value in sorted(node["inputs"].items()):
            if is_link(value):
                upstream = keys.get(str(value[0]))
                ok = ok and upstream is not None
                parts[name] = [upstream, value[1]]
            else:
                parts[name] = value
        changed = getattr(cls, "IS_CHANGED", None)
        if callable(changed):
            try:
                parts["__changed__"] = repr(
                    changed(**{k: v for k, v in node["inputs"].items() if not is_link(v)})
                )
            except Exception:
                ok = False  # ComfyUI's NaN: run it again
        keys[node_id] = json.dumps([node["class_type"], parts], sort_keys=True, default=repr) if ok else None
    return keys


def cacheable(node: dict[str, Any]) -> bool:
    """Loaders hand out the worker's resident models: kept in this cache, an evicted model would
    stay in memory. They run every time (the model cache makes that cheap)."""
    return bool(getattr(node_class(node["class_type"]), "ATELIER_CACHE_OUTPUT", True))


def call_node(
    node_id: str,
    node: dict[str, Any],
    values: dict[str, tuple[Any, ...]],
    prompt: Any,
    extra_data: dict[str, Any],
) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
    cls = node_class(node["class_type"])
    assert cls is not None
    arguments: dict[str, Any] = {}
    for name, value in node["inputs"].items():
        arguments[name] = values[str(value[0])][value[1]] if is_link(value) else value
    for name, kind in hidden_inputs(cls).items():
        arguments[name] = {
            "PROMPT": prompt,
            "EXTRA_PNGINFO": extra_data.get("extra_pnginfo"),
            "UNIQUE_ID": node_id,
        }.get(kind)
    result = getattr(cls(), cls.FUNCTION)(**arguments)  # type: ignore[attr-defined]
    if isinstance(result, dict):
        return tuple(result.get("result", ())), result.get("ui")
    return tuple(result or ()), None


def run_prompt(
    prompt: dict[str, dict[str, Any]],
    outputs: list[str],
    *,
    worker: Any,
    extra_data: dict[str, Any] | None = None,
    cache: OutputCache | None = None,
) -> Outcome:
    """Run the outputs' nodes with ``worker`` as the runtime and listener of node events; the
    process's shared output cache unless another is given."""
    extra_data = extra_data or {}
    cache = cache if cache is not None else shared_cache()
    order = execution_order(prompt, outputs)
    keys = signatures(prompt, order)
    values: dict[str, tuple[Any, ...]] = {}
    outcome = Outcome(status="success")
    if cache is not None:
        for node_id in order:
            key = keys[node_id] if cacheable(prompt[node_id]) else None
            hit = cache.get(key) if key is not None else None
            if hit is not None:
                values[node_id] = hit
                outcome.cached.append(node_id)
    listener: Listener = worker
    listener.cached(list(outcome.cached))
    with runtime.using(worker):
        for node_id in order:
            if node_id in values:
                continue
            node = prompt[node_id]
            listener.executing(node_id)
            try:
                values[node_id], ui = call_node(node_id, node, values, prompt, extra_data)
            except runtime.Interrupted:
                outcome.status, outcome.node_id, outcome.node_type = (
                    "interrupted",
                    node_id,
                    node["class_type"],
                )
                return outcome
            except Exception as exc:
                log.warning("node %s (%s) failed: %s", node_id, node["class_type"], exc)
                outcome.status, outcome.node_id, outcome.node_type = "error", node_id, node["class_type"]
                outcome.code = str(getattr(exc, "code", "") or "generation_failed")
                outcome.exception_message, outcome.exception_type = str(exc), type(exc).__name__
                outcome.traceback = traceback.format_exception(exc)[-6:]
                outcome.exception = exc
                return outcome
            outcome.executed.append(node_id)
            key = keys[node_id]
            if cache is not None and key is not None and cacheable(node):
                cache.put(key, values[node_id])
            if ui is not None:
                outcome.outputs[node_id] = ui
                listener.executed(node_id, ui)
    return outcome

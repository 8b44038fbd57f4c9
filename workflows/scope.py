"""What a node's options depend on, set per request (validation, ``/object_info``) or per job.

ComfyUI nodes read their option lists from process globals (the models folder, the input
folder). Here the lists depend on who asks: their plan's models, their own uploads. A node's
``INPUT_TYPES`` reads `current()`; the web tier and the worker set it with `using`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scope:
    checkpoints: tuple[str, ...] = ()
    loras: tuple[str, ...] = ()  # the LoRA folder's files (generations.loras)
    # Input files by the name LoadImage takes (the upload's name) -> (width, height).
    input_files: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Per checkpoint: (min_side, max_side, max_batch, max_steps) of one sampling node.
    limits: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    max_nodes: int = 500


_current: ContextVar[Scope | None] = ContextVar("workflow_scope", default=None)


def current() -> Scope:
    return _current.get() or Scope()


@contextlib.contextmanager
def using(scope: Scope) -> Iterator[Scope]:
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)

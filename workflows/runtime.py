"""What a running node may ask of the worker that runs it: models, input files, saving images,
progress (and the user's cancel). Set by the executor for the length of a job; nodes call
`current()`, as ComfyUI nodes call its global model management.

Kept free of torch: the web tier imports the nodes that import this.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, Protocol


class Interrupted(Exception):
    """The user canceled the job (or it was interrupted): stop at once, before the next step."""


class NodeFailed(Exception):
    """A node could not do its work for a reason the user can fix (a code from the catalogue)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# A patch (a LoRA, say) given the loaded model applies itself for the length of a with-block, and
# takes itself off after: the resident model is shared by every job and stays as it was.
Patch = Callable[[Any], AbstractContextManager[object]]


@dataclass(frozen=True)
class ModelHandle:
    """A MODEL value: a checkpoint's denoiser, with the patches that nodes upstream added."""

    name: str
    loaded: Any  # gpu_worker.model.LoadedModel
    patches: tuple[Patch, ...] = ()

    def with_patch(self, patch: Patch) -> ModelHandle:
        return replace(self, patches=(*self.patches, patch))


@dataclass(frozen=True)
class ClipHandle:
    """A CLIP value: a checkpoint's tokenizer(s) and text encoder(s), with their patches."""

    name: str
    loaded: Any
    skip_layers: int = 0
    patches: tuple[Patch, ...] = ()

    def with_patch(self, patch: Patch) -> ClipHandle:
        return replace(self, patches=(*self.patches, patch))


@contextlib.contextmanager
def patched(loaded: Any, patches: tuple[Patch, ...]) -> Iterator[None]:
    """The patches applied, in order, for the length of the block; taken off in reverse."""
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch(loaded))
        yield


@dataclass(frozen=True)
class VaeHandle:
    name: str
    loaded: Any


class Runtime(Protocol):
    device: str

    def load_checkpoint(self, name: str) -> Any: ...

    def load_input(self, name: str) -> Any: ...

    def lora_patch(self, name: str, strength: float, part: str) -> Patch:
        """A LoRA file on a model's denoiser (part ``model``) or text encoders (``clip``)."""
        ...

    def save_images(
        self, images: list[Any], *, prefix: str, kind: str, prompt: Any = None, extra_pnginfo: Any = None
    ) -> list[dict[str, str]]: ...

    def send_image(self, picture: Any) -> None:
        """A PNG to the submitting socket as a binary frame (SaveImageWebsocket)."""
        ...

    def progress(self, value: int, total: int, latents: Any = None) -> bool:
        """Report a step; False when the job was canceled (the node then raises Interrupted)."""
        ...


_current: ContextVar[Runtime | None] = ContextVar("workflow_runtime", default=None)


def current() -> Runtime:
    runtime = _current.get()
    if runtime is None:
        raise RuntimeError("a node ran outside of a workflow job")
    return runtime


@contextlib.contextmanager
def using(runtime: Runtime) -> Iterator[Runtime]:
    token = _current.set(runtime)
    try:
        yield runtime
    finally:
        _current.reset(token)

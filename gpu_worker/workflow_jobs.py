"""A workflow job: its graph run by the registered executor (``ATELIER_WORKFLOW_EXECUTOR``,
workflows/executor.py) on this worker's resident models, its node-level messages sent to the
ComfyUI socket that submitted it, and its status changed by `generations.lifecycle` as for
every job. One workflow is one job: it is never batched with others.
"""

from __future__ import annotations

import base64
import io
import logging
import struct
import time
import uuid
from pathlib import PurePosixPath
from typing import Any

import torch
from django.conf import settings
from django.utils.module_loading import import_string
from PIL import Image as PILImage
from rq.timeouts import JobTimeoutException

from core.errors import CATALOGUE
from generations import queues, thumbnails
from generations.lifecycle_batch import Finished, succeed_many
from generations.models import Generation, Image, Upload
from generations.publisher import workflow_group
from generations.registry import get_model
from generations.storage import open_content, save_content
from generations.thumbnails import Thumbnails
from gpu_worker.encoders import png_with_parameters
from gpu_worker.failures import TRANSIENT_ERRORS, GenerationFailed
from gpu_worker.loras import lora_patch
from gpu_worker.model import LoadedModel
from gpu_worker.previews import preview_url
from gpu_worker.rendering import load_model
from gpu_worker.storage import image_row, parameters

# The runner (gpu_worker.runner.GenerationRunner, which imports this module): its cache,
# publisher, name, progress interval and transitions.
GenerationRunner = Any

log = logging.getLogger(__name__)

PREVIEW_IMAGE = 1  # binary frame: event type, then image format (2 = PNG), then the image
PNG = 2
PREVIEW_METHODS = ("auto", "latent2rgb", "taesd")


class WorkflowRuntime:
    """What the graph's nodes ask of this worker (workflows.runtime.Runtime) and where the
    executor reports node events (workflows.executor.Listener)."""

    def __init__(self, runner: GenerationRunner, generation: Generation) -> None:
        self.runner = runner
        self.generation = generation
        self.device = runner.cache.device
        self.prompt_id = str(generation.id)
        self.client_id = str(generation.workflow.get("client_id") or "")
        self.rows: list[Image] = []
        self.later: list[Thumbnails] = []  # the rows' thumbnails, written once they are saved
        self.files: dict[str, dict[str, str]] = {}
        self.node_id: str | None = None
        self.steps_before = 0  # steps of the sampling nodes already finished
        self.last_value = 0
        self.last_sent = 0.0
        self.cached_nodes: list[str] = []
        self.node_states: dict[str, dict[str, Any]] = {}  # progress_state's nodes
        # Binary preview frames only when asked, as ComfyUI (whose default preview method is
        # none): clients such as comfy-api-simplified take every binary frame for an output.
        method = str(generation.workflow.get("extra_data", {}).get("preview_method") or "")
        self.previews = method in PREVIEW_METHODS or (settings.ATELIER_WORKFLOW_PREVIEWS and method != "none")

    # To the socket that submitted the prompt (nothing without a client_id, as in ComfyUI).

    def send(self, kind: str, data: dict[str, Any]) -> None:
        if self.client_id:
            message = {"type": "workflow.message", "client_id": self.client_id, "kind": kind, "data": data}
            # Under lag only the latest progress of a prompt is kept (generations/publisher.py).
            key = f"{self.prompt_id}:progress" if kind == "progress" else None
            self.runner.publisher.send_to_group(workflow_group(self.generation.user_id), message, key=key)

    def send_bytes(self, payload: bytes, *, preview: bool = False) -> None:
        if self.client_id:
            message = {"type": "workflow.message", "client_id": self.client_id, "bytes": payload}
            group = workflow_group(self.generation.user_id)
            self.runner.publisher.send_to_group(group, message, preview_frame=preview)

    # The executor's listener.

    def cached(self, nodes: list[str]) -> None:
        self.cached_nodes = nodes
        self.send("execution_cached", {"nodes": nodes, "prompt_id": self.prompt_id, "timestamp": now_ms()})

    def executing(self, node_id: str) -> None:
        if self.last_value:
            self.steps_before += self.last_value
            self.last_value = 0
        self.finish_node()
        self.node_id = node_id
        self.send("executing", {"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id})
        self.node_state(node_id, "running", 0, 1)

    def executed(self, node_id: str, ui: dict[str, Any]) -> None:
        data = {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": self.prompt_id}
        self.send("executed", data)

    def finish_node(self) -> None:
        """The running node is done (the next one starts, or the prompt ends)."""
        state = self.node_states.get(self.node_id or "")
        if state is not None and state["state"] == "running":
            self.node_state(state["node_id"], "finished", state["max"], state["max"])

    def end_nodes(self, *, failed: bool) -> None:
        state = self.node_states.get(self.node_id or "")
        if failed and state is not None and state["state"] == "running":
            self.node_state(state["node_id"], "error", state["value"], state["max"])
        else:
            self.finish_node()

    def node_state(self, node_id: str, state: str, value: float, maximum: float) -> None:
        """ComfyUI's ``progress_state``: every node met so far, with its state and progress."""
        self.node_states[node_id] = {
            "value": value,
            "max": maximum,
            "state": state,
            "node_id": node_id,
            "prompt_id": self.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        self.send("progress_state", {"prompt_id": self.prompt_id, "nodes": self.node_states})

    # The nodes' runtime.

    def load_checkpoint(self, name: str) -> LoadedModel:
        spec = get_model(name)
        if spec is None:
            raise GenerationFailed("model_unavailable", f"The model {name!r} is not configured.")
        model, _ = load_model(self.runner.cache, spec, self.runner.speed_options(spec))
        self.runner.current_model = model
        self.runner.advertise_models()
        return model

    def lora_patch(self, name: str, strength: float, part: str) -> Any:
        return lora_patch(name, strength, part)

    def load_input(self, name: str) -> PILImage.Image:
        try:
            key = uuid.UUID(name.removesuffix(".png"))
        except ValueError:
            key = None
        upload = Upload.objects.filter(user_id=self.generation.user_id, pk=key).first() if key else None
        if upload is None:
            raise GenerationFailed("input_missing", f"The input image {name!r} is not one of yours.")
        try:
            data = open_content(upload.file)
        except OSError as exc:
            raise GenerationFailed("input_missing") from exc
        picture = PILImage.open(io.BytesIO(data))
        return picture.convert("RGBA" if "A" in picture.getbands() else "RGB")

    def save_images(
        self,
        images: list[PILImage.Image],
        *,
        prefix: str,
        kind: str,
        prompt: Any = None,
        extra_pnginfo: Any = None,
    ) -> list[dict[str, str]]:
        path = PurePosixPath(prefix.replace("\\", "/"))
        parts = [p for p in path.parent.parts if p not in ("", ".", "..", "/")]
        subfolder, base = "/".join(parts), (path.name or "ComfyUI")[:80]
        extra: dict[str, Any] = {"prompt": prompt} if prompt is not None else {}
        if isinstance(extra_pnginfo, dict):
            extra.update(extra_pnginfo)
        saved = []
        for picture in images:
            number = len(self.files) + 1
            filename = f"{base}_{self.generation.id.hex}_{number:05d}_.png"
            seed = self.generation.seed + len(self.rows)
            png = png_with_parameters(picture, parameters(self.generation, seed), extra)
            stored, digest = save_content("images" if kind == "output" else "temp", png, "png")
            if kind == "output":
                row = image_row(self.generation, len(self.rows), seed, picture, stored, digest, self.later)
                self.rows.append(row)
            self.files[f"{subfolder}/{filename}" if subfolder else filename] = {"path": stored, "type": kind}
            saved.append({"filename": filename, "subfolder": subfolder, "type": kind})
        return saved

    def send_image(self, picture: PILImage.Image) -> None:
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
        self.send_bytes(struct.pack(">II", PREVIEW_IMAGE, PNG) + buffer.getvalue())

    def progress(self, value: int, total: int, latents: Any = None) -> bool:
        """One sampling step: False when the user canceled; throttled progress otherwise."""
        if queues.cancel_requested(self.prompt_id):
            return False
        self.last_value = value
        now = time.monotonic()
        if value < total and now - self.last_sent < self.runner.progress_interval:
            return True
        self.last_sent = now
        job = self.generation
        job.step = min(self.steps_before + value, job.steps)
        job.total_steps = job.steps
        Generation.objects.filter(pk=job.pk, status="running", worker_name=self.runner.name).update(
            step=job.step, total_steps=job.total_steps
        )
        preview = preview_url(latents, self.runner.current_model) if latents is not None else None
        self.runner.publish(job, "generation.progress", preview=preview)
        self.send(
            "progress", {"value": value, "max": total, "prompt_id": self.prompt_id, "node": self.node_id}
        )
        if self.node_id is not None:
            self.node_state(self.node_id, "running", value, total)
        if preview is not None and self.previews:
            self.send_preview(base64.b64decode(preview.partition(",")[2]))
        return True

    def send_preview(self, jpeg: bytes) -> None:
        """A sampling preview with the node it comes from: the socket frames it as type 4 (with
        this metadata) for clients that announced ``supports_preview_metadata``, else type 1."""
        if self.client_id:
            node = self.node_id
            metadata = {"node_id": node, "prompt_id": self.prompt_id, "display_node_id": node}
            metadata |= {"parent_node_id": None, "real_node_id": node}
            message: dict[str, Any] = {"type": "workflow.message", "client_id": self.client_id}
            message |= {"preview": jpeg, "metadata": metadata}
            group = workflow_group(self.generation.user_id)
            self.runner.publisher.send_to_group(group, message, preview_frame=True)  # dropped first under lag


def node_plugin_report() -> dict[str, Any]:
    """Load the node plugins once, at start (``ATELIER_WORKFLOW_PLUGIN_REPORT``), and say which
    were skipped: a broken plugin is logged and shown in the heartbeat, never fatal."""
    try:
        report: dict[str, Any] = import_string(settings.ATELIER_WORKFLOW_PLUGIN_REPORT)()
    except Exception as exc:
        log.exception("node plugins could not be listed")
        return {"loaded": {}, "broken": {"*": f"{type(exc).__name__}: {exc}"}}
    for plugin, why in report.get("broken", {}).items():
        log.error("node plugin %s is broken and was skipped: %s", plugin, why)
    return report


def now_ms() -> int:
    return int(time.time() * 1000)


def run_workflow(runner: GenerationRunner, generation: Generation) -> None:
    """Run the claimed workflow and move it to its terminal state."""
    execute = import_string(settings.ATELIER_WORKFLOW_EXECUTOR)
    worker = WorkflowRuntime(runner, generation)
    workflow = generation.workflow
    clock = time.perf_counter()
    outcome = execute(
        workflow.get("prompt", {}),
        list(workflow.get("outputs_to_execute", [])),
        worker=worker,
        extra_data=workflow.get("extra_data", {}),
    )
    worker.end_nodes(failed=outcome.status != "success")
    earlier = {k: v for k, v in workflow.items() if k != "error"}  # a retried attempt's error
    recorded = {**earlier, "outputs": outcome.outputs, "files": worker.files, "cached": outcome.cached}
    if outcome.status == "success":
        timings = {"queue_wait": queue_wait(generation), "denoise": round(time.perf_counter() - clock, 4)}
        finished = Finished(generation, worker.rows, timings, units=1, fields={"workflow": recorded})
        if succeed_many(
            [finished], worker_name=runner.name, batch_size=1, memory_mode="normal", publish=runner.push
        ):
            log.info("workflow %s succeeded", generation.id)
            for planned in worker.later:
                thumbnails.write(planned)
        return
    recorded["error"] = {
        "node_id": outcome.node_id,
        "node_type": outcome.node_type,
        "executed": outcome.executed,
        "exception_message": outcome.exception_message,
        "exception_type": outcome.exception_type,
        "traceback": outcome.traceback,
    }
    # Not the status: the details ComfyUI clients read, written before the transition tells them.
    Generation.objects.filter(pk=generation.pk, worker_name=runner.name).update(workflow=recorded)
    error = outcome.exception
    if outcome.status == "interrupted":
        runner.cancel(generation)
    elif isinstance(error, TRANSIENT_ERRORS):
        log.warning("workflow %s hit a transient error: %s", generation.id, error)
        runner.retry_later(generation, error)
    elif isinstance(error, JobTimeoutException):
        runner.fail(generation, "timeout", "The workflow ran longer than its pool's limit.")
    elif isinstance(error, torch.OutOfMemoryError):
        runner.fail(generation, "out_of_memory", CATALOGUE["out_of_memory"][1])
    else:
        message = f"Node {outcome.node_id} ({outcome.node_type}) failed: {outcome.exception_message}"
        runner.fail(generation, outcome.code or "generation_failed", message[:2000])


def queue_wait(generation: Generation) -> float:
    if generation.started_at is None:
        return 0.0
    return round(max(0.0, (generation.started_at - generation.created_at).total_seconds()), 4)

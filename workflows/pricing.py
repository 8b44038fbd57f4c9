"""What a valid graph asks of the model, before it is queued: the size of every latent that a
sampling node denoises (followed through the graph), checked against the model's limits, and
the work to be priced (pixels x steps x batch of each sampling node, on its checkpoint).

A node class takes part through two optional static methods: ``output_shape(inputs, shapes)``
returns the (width, height, batch) in pixels of its first output from those of its linked inputs;
a sampling node sets ``ATELIER_SAMPLING`` and says how many steps it runs with ``steps_run``.
Pure: no torch, no database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workflows import scope
from workflows.registry import node_class
from workflows.validation import PromptInvalid, ValidPrompt, error, is_link

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class SamplingWork:
    node_id: str
    checkpoint: str
    width: int
    height: int
    batch: int
    steps: int


class GraphPlan:
    def __init__(self, valid: ValidPrompt) -> None:
        self.prompt = valid.prompt
        self.shapes: dict[str, Shape | None] = {}
        self.errors: dict[str, list[dict[str, Any]]] = {}

    def shape(self, node_id: str, depth: int = 0) -> Shape | None:
        if node_id in self.shapes:
            return self.shapes[node_id]
        self.shapes[node_id] = None  # a guard; valid graphs have no cycles
        node = self.prompt[node_id]
        cls = node_class(node["class_type"])
        infer = getattr(cls, "output_shape", None)
        result = None
        if infer is not None and depth < 1000:
            inputs = node["inputs"]
            linked = {k: self.shape(str(v[0]), depth + 1) for k, v in inputs.items() if is_link(v)}
            try:
                found = infer(inputs, linked)
                result = (int(found[0]), int(found[1]), int(found[2])) if found else None
            except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError):
                result = None
        self.shapes[node_id] = result
        return result

    def checkpoint(self, node_id: str) -> str | None:
        """The checkpoint whose denoiser reaches this node's ``model`` input (through LoRA loaders
        and other pass-through nodes)."""
        seen: set[str] = set()
        current = node_id
        while current not in seen:
            seen.add(current)
            inputs = self.prompt[current]["inputs"]
            if isinstance(inputs.get("ckpt_name"), str):
                return str(inputs["ckpt_name"])
            link = inputs.get("model")
            if not is_link(link):
                return None
            current = str(link[0])
        return None

    def fail(self, node_id: str, problem: dict[str, Any]) -> None:
        self.errors.setdefault(node_id, []).append(problem)

    def sampling_work(self) -> list[SamplingWork]:
        limits = scope.current().limits
        work = []
        for node_id, node in self.prompt.items():
            cls = node_class(node["class_type"])
            if not getattr(cls, "ATELIER_SAMPLING", False):
                continue
            inputs = node["inputs"]
            checkpoint = self.checkpoint(node_id) or ""
            latent = inputs.get("latent_image")
            source = str(latent[0]) if is_link(latent) else node_id
            shape = self.shape(source) or (512, 512, 1)
            steps = int(cls.steps_run(inputs))  # type: ignore[union-attr]
            min_side, max_side, max_batch, max_steps = limits.get(checkpoint, (16, 16384, 4096, 10000))
            self.check_size(source, checkpoint, shape, (min_side, max_side, max_batch))
            if steps > max_steps:
                message = f"Value {steps} bigger than max of {max_steps}"
                self.fail(
                    node_id,
                    error(
                        "value_bigger_than_max",
                        message,
                        f"steps: {checkpoint} runs at most {max_steps} steps",
                        input_name="steps",
                    ),
                )
            work.append(SamplingWork(node_id, checkpoint, shape[0], shape[1], shape[2], steps))
        return work

    def check_size(self, node_id: str, checkpoint: str, shape: Shape, limits: tuple[int, int, int]) -> None:
        min_side, max_side, max_batch = limits
        inputs = self.prompt[node_id]["inputs"]
        for name, value in (("width", shape[0]), ("height", shape[1])):
            if value > max_side:
                message = f"Value {value} bigger than max of {max_side}"
                details = f"{name}: {checkpoint} makes images of at most {max_side} pixels a side"
                self.fail(
                    node_id,
                    error(
                        "value_bigger_than_max",
                        message,
                        details,
                        input_name=name if name in inputs else "latent_image",
                        received_value=value,
                    ),
                )
            elif value < min_side:
                message = f"Value {value} smaller than min of {min_side}"
                details = f"{name}: {checkpoint} makes images of at least {min_side} pixels a side"
                self.fail(
                    node_id,
                    error(
                        "value_smaller_than_min",
                        message,
                        details,
                        input_name=name if name in inputs else "latent_image",
                        received_value=value,
                    ),
                )
        if shape[2] > max_batch:
            message = f"Value {shape[2]} bigger than max of {max_batch}"
            details = f"batch_size: at most {max_batch} images per sampling"
            self.fail(
                node_id,
                error(
                    "value_bigger_than_max",
                    message,
                    details,
                    input_name="batch_size" if "batch_size" in inputs else "latent_image",
                    received_value=shape[2],
                ),
            )


def plan_work(valid: ValidPrompt) -> list[SamplingWork]:
    """The sampling work of the graph; raises `PromptInvalid` when a latent or a step count is
    beyond its model's limits."""
    plan = GraphPlan(valid)
    work = plan.sampling_work()
    if plan.errors:
        node_errors = {
            node_id: {
                "errors": problems,
                "dependent_outputs": list(valid.outputs),
                "class_type": valid.prompt[node_id]["class_type"],
            }
            for node_id, problems in plan.errors.items()
        }
        raise PromptInvalid(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", "", node_errors
        )
    return work

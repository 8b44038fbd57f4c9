"""A render stopped at a step boundary resumes from its saved point to the identical image
(deterministic samplers), or keeps no point and restarts (ancestral samplers, img2img).

Renders with the tiny random SD model on CPU, in-process: the live preemption test
(tests/test_preemption_live.py) goes through real workers and the dispatcher.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch
from PIL import Image

from gpu_worker.cache import ModelCache
from gpu_worker.model import LoadedModel, RenderSpec, ResumePoint
from gpu_worker.pipeline import render_batch
from gpu_worker.tiny_families import build_family
from gpu_worker.tiny_model import ensure_tiny_model

STEPS = 8
STOP_AT = 3


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    path = tmp_path_factory.mktemp("models") / "tiny-sd"
    ensure_tiny_model(path)
    return ModelCache(device="cpu", max_models=1).get(str(path))


def spec(sampler: str, **overrides: object) -> RenderSpec:
    values: dict[str, object] = {
        "prompt": "a red circle",
        "width": 64,
        "height": 64,
        "steps": STEPS,
        "seeds": [7, 8],
        "sampler": sampler,
    }
    values.update(overrides)
    return RenderSpec(**values)  # type: ignore[arg-type]


def run(model: LoadedModel, job: RenderSpec, *, stop_at: int | None = None) -> tuple[object, list[int]]:
    """The batch result and the steps the callback saw; stops the job after ``stop_at`` steps."""
    seen: list[int] = []

    def on_step(step: int, total: int, latents: dict[int, torch.Tensor]) -> set[int]:
        seen.append(step)
        return {0} if step == stop_at else set()

    return render_batch(model, [job], on_step), seen


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "default"])
def test_it_resumes_a_deterministic_sampler_to_the_identical_image(model: LoadedModel, sampler: str) -> None:
    whole, _ = run(model, spec(sampler))
    stopped, seen_before = run(model, spec(sampler), stop_at=STOP_AT)
    assert stopped.images == [None]  # type: ignore[attr-defined]
    point: ResumePoint = stopped.stopped_at[0]  # type: ignore[attr-defined]
    assert point.step == STOP_AT and seen_before == [1, 2, 3]

    resumed, seen_after = run(model, spec(sampler, resume=point))

    assert seen_after == list(range(STOP_AT + 1, STEPS + 1))  # no step ran twice
    expected = whole.images[0]  # type: ignore[attr-defined]
    got = resumed.images[0]  # type: ignore[attr-defined]
    assert len(got) == len(expected) == 2
    for a, b in zip(got, expected, strict=True):
        assert np.array_equal(pixels(a), pixels(b))


@pytest.mark.parametrize(("family", "sampler"), [("sdxl", "euler"), ("sdxl", "dpmpp_2m"), ("sd2", "ddim")])
def test_other_families_resume_to_the_identical_image(
    tmp_path: pathlib.Path, family: str, sampler: str
) -> None:
    build_family(family, tmp_path / family)
    other = ModelCache(device="cpu", max_models=1).get(str(tmp_path / family))
    whole, _ = run(other, spec(sampler))
    stopped, _ = run(other, spec(sampler), stop_at=STOP_AT)
    resumed, seen = run(other, spec(sampler, resume=stopped.stopped_at[0]))  # type: ignore[attr-defined]
    assert seen == list(range(STOP_AT + 1, STEPS + 1))
    for a, b in zip(resumed.images[0], whole.images[0], strict=True):  # type: ignore[attr-defined]
        assert np.array_equal(pixels(a), pixels(b))


def test_a_flow_matching_model_keeps_no_point(tmp_path: pathlib.Path) -> None:
    build_family("sd3", tmp_path / "sd3")
    other = ModelCache(device="cpu", max_models=1).get(str(tmp_path / "sd3"))
    stopped, _ = run(other, spec("euler"), stop_at=STOP_AT)
    assert stopped.stopped_at == {}  # type: ignore[attr-defined]


def test_a_resumed_run_can_be_stopped_and_resumed_again(model: LoadedModel) -> None:
    whole, _ = run(model, spec("dpmpp_2m"))
    first, _ = run(model, spec("dpmpp_2m"), stop_at=2)
    second, seen = run(model, spec("dpmpp_2m", resume=first.stopped_at[0]), stop_at=5)  # type: ignore[attr-defined]
    assert seen == [3, 4, 5]
    final, _ = run(model, spec("dpmpp_2m", resume=second.stopped_at[0]))  # type: ignore[attr-defined]
    for a, b in zip(final.images[0], whole.images[0], strict=True):  # type: ignore[attr-defined]
        assert np.array_equal(pixels(a), pixels(b))


def test_an_ancestral_sampler_keeps_no_point(model: LoadedModel) -> None:
    stopped, _ = run(model, spec("euler_a"), stop_at=STOP_AT)
    assert stopped.images == [None]  # type: ignore[attr-defined]
    assert stopped.stopped_at == {}  # type: ignore[attr-defined]


def test_img2img_keeps_no_point(model: LoadedModel) -> None:
    source = Image.new("RGB", (64, 64), (200, 30, 30))
    stopped, _ = run(model, spec("euler", init_image=source, strength=1.0), stop_at=2)
    assert stopped.stopped_at == {}  # type: ignore[attr-defined]


def test_a_job_stopped_in_a_batch_keeps_its_own_point_and_resumes_alone(model: LoadedModel) -> None:
    """Its point holds its own images' latents and solver history; the rest of the batch goes on.
    Resumed alone, it matches an uninterrupted run as closely as a batched job matches one run
    alone (a batch of another size may round differently: tests/test_batching.py)."""
    jobs = [spec("dpmpp_2m", prompt="a blue square", seeds=[3]), spec("dpmpp_2m", seeds=[5, 6])]

    def on_step(step: int, total: int, latents: dict[int, torch.Tensor]) -> set[int]:
        return {1} if step == STOP_AT else set()

    batch = render_batch(model, jobs, on_step)
    assert batch.images[0] is not None and batch.images[1] is None
    point = batch.stopped_at[1]
    assert point.latents.shape[0] == 2 and all(h is None or h.shape[0] == 2 for h in point.history)

    resumed, _ = run(model, spec("dpmpp_2m", seeds=[5, 6], resume=point))
    alone, _ = run(model, spec("dpmpp_2m", seeds=[5, 6]))
    for a, b in zip(resumed.images[0], alone.images[0], strict=True):  # type: ignore[attr-defined]
        assert np.abs(pixels(a) - pixels(b)).max() <= 2

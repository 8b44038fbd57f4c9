"""Every supported model family, built tiny from its config, through the worker's own code path."""

from __future__ import annotations

import io
import json
import pathlib
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from core.model_catalog import ModelSpec
from generations import queues
from gpu_worker.cache import ModelCache
from gpu_worker.model import LATENT_RGB_FACTORS, RenderSpec
from gpu_worker.pipeline import render, render_batch
from gpu_worker.previews import latents_to_preview
from gpu_worker.tiny_families import FAMILIES, build_family

PIPELINES = {
    "sd15": "StableDiffusionPipeline",
    "sd2": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sdxl-turbo": "StableDiffusionXLPipeline",
    "sd3": "StableDiffusion3Pipeline",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("families")
    paths = {}
    for family in FAMILIES:
        paths[family] = root / family
        build_family(family, paths[family])
    return paths


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_loads_batches_and_previews(family: str, models: dict[str, pathlib.Path]) -> None:
    index = json.loads((models[family] / "model_index.json").read_text())
    assert index["_class_name"] == PIPELINES[family]
    model = ModelCache(max_models=1).get(str(models[family]))
    steps, guidance = (2, 0.0) if family == "sdxl-turbo" else (3, 5.0)
    specs = [
        RenderSpec(prompt="a red boat", seeds=[1], width=64, height=64, steps=steps, guidance=guidance),
        RenderSpec(
            prompt="a cat at night", seeds=[2, 3], width=64, height=64, steps=steps, guidance=guidance
        ),
    ]
    latent_shapes: list[tuple[int, ...]] = []

    def on_step(step: int, total: int, latents: dict[int, torch.Tensor]) -> set[int]:
        latent_shapes.extend(tuple(t.shape) for t in latents.values())
        preview = Image.open(io.BytesIO(latents_to_preview(latents[0], factors=model.preview_factors)))
        assert preview.size == (128, 128)
        return set()

    batched = render_batch(model, specs, on_step)

    channels = 16 if family == "sd3" else 4
    assert latent_shapes[0] == (1, channels, 8, 8) and latent_shapes[1] == (2, channels, 8, 8)
    assert model.preview_factors.shape == (channels, 3)
    first = batched.images[0]
    assert first is not None and first[0].size == (64, 64)
    alone = render(model, specs[0])[0]
    assert np.abs(np.asarray(first[0], np.int16) - np.asarray(alone, np.int16)).max() <= 2
    # Image-to-image runs on the same components, through the family's own img2img pipeline.
    img2img = RenderSpec(
        prompt="same boat",
        seeds=[4],
        width=64,
        height=64,
        steps=4,
        guidance=guidance,
        init_image=alone,
        strength=0.5,
    )
    (varied,) = render(model, img2img)
    assert varied.size == (64, 64)
    assert model.txt2img.components["vae"] is model.img2img.components["vae"]


def test_the_fitted_preview_looks_like_the_decoded_image(models: dict[str, pathlib.Path]) -> None:
    model = ModelCache().get(str(models["sdxl"]))
    vae = model.txt2img.vae
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(9))
    with torch.inference_mode():
        decoded = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
    truth = torch.nn.functional.avg_pool2d(decoded, 8)[0].permute(1, 2, 0)
    fitted = torch.einsum("chw,cr->hwr", latents[0], model.preview_factors) + model.preview_bias
    sd1_factors = torch.einsum("chw,cr->hwr", latents[0], LATENT_RGB_FACTORS)
    error = (fitted - truth).abs().mean()
    # A random VAE is far less linear than a trained one, yet the fit beats both the fixed SD 1.x
    # factors and a flat grey preview on latents it has never seen.
    assert error < (sd1_factors - truth).abs().mean()
    assert error < truth.abs().mean()


@pytest.mark.django_db
@pytest.mark.parametrize("family", ["sdxl-turbo", "sd3"])
def test_the_worker_runs_a_job_of_each_family(
    family: str, models: dict[str, pathlib.Path], settings: Any
) -> None:
    from accounts.models import User
    from generations.models import GenerationStatus, Image
    from gpu_worker.runner import GenerationRunner
    from tests.factories import queued_generation

    spec = ModelSpec(name=f"tiny-{family}", path=str(models[family]), pool=f"{family}-pool", family=family)
    settings.ATELIER_MODELS = {**settings.ATELIER_MODELS, spec.name: spec}
    user = User.objects.create(username=f"fan-of-{family}")
    jobs = [
        queued_generation(
            user, model_name=spec.name, pool=spec.pool, prompt=f"a kite {i}", guidance=0.0, seed=i
        )
        for i in range(2)
    ]
    queues.enqueue_many(jobs[1:])
    runner = GenerationRunner(name=f"{family}-runner")
    runner.progress_interval = 0
    previews: list[str] = []
    runner.publish = lambda generation, kind, **extra: previews.append(extra.get("preview", ""))  # type: ignore[method-assign]
    try:
        runner.run_one(str(jobs[0].id))
    finally:
        runner.publisher.close()
    for job in jobs:
        job.refresh_from_db()
        assert (job.status, job.batch_size) == (GenerationStatus.SUCCEEDED, 2)
        assert Image.objects.filter(generation=job).count() == 1
    assert any(p.startswith("data:image/jpeg;base64,") for p in previews)

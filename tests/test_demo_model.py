"""The built-in model's trained weights (demo_model/weights): its files, and what the judge reads.

Loaded directly through diffusers' StableDiffusionPipeline, the class the worker loads them with
(tests/test_demo_model_live.py drives them through the API and a real worker).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from core.model_catalog import builtin_model
from demo_model import manifest
from demo_model.evaluation import evaluation_set, pipeline_generator
from demo_model.judge import judge

BUILTIN_GUIDANCE = builtin_model().default_guidance

PROMPTS = (
    "a sunset over the sea",
    "a house with a tree",
    "a lighthouse at dusk",
    "mountains",
    "the moon in a night sky",
    "a green square on the left on a white background",
)


def test_the_shipped_files_match_the_manifest() -> None:
    assert manifest.mismatches() == []
    shipped = manifest.read()
    assert sum(entry["bytes"] for entry in shipped["files"].values()) <= 30 * 2**20
    assert shipped["command"].startswith(
        ("python manage.py train_demo_model", "python -m demo_model.gpu_training")
    )
    assert {"world_version", "seed", "scores"} <= set(shipped)
    assert any(name.endswith(".safetensors") for name in shipped["files"])


@functools.cache
def generator(guidance: float) -> Any:
    return pipeline_generator(manifest.WEIGHTS, guidance=guidance)


def test_guidance_follows_the_prompt_better_than_no_guidance() -> None:
    # Objects, where guidance matters (scenes come out right either way); the judge's fixed cases.
    cases = [case for case in evaluation_set(60) if case.picture.background != "scene"][:12]

    def hits(guidance: float) -> int:
        verdicts = [judge(generator(guidance)(case.prompt, case.seed), case.prompt) for case in cases]
        return sum(verdict.get("colour", False) + verdict.get("position", False) for verdict in verdicts)

    guided, unguided = hits(BUILTIN_GUIDANCE), hits(1.0)
    assert guided > unguided, (guided, unguided)


def test_it_draws_the_scenes_it_was_taught() -> None:
    for prompt in PROMPTS[:4]:
        assert judge(generator(BUILTIN_GUIDANCE)(prompt, 3), prompt) == {"scene": True}, prompt


def test_other_seeds_give_other_arrangements_of_the_same_request() -> None:
    prompt = "a lighthouse at dusk"
    first, second = (generator(BUILTIN_GUIDANCE)(prompt, seed) for seed in (11, 12))
    assert np.abs(np.asarray(first, dtype=np.float32) - np.asarray(second, dtype=np.float32)).mean() > 1.0
    assert first.size == (256, 256)
    for image in (first, second):
        assert judge(image, prompt) == {"scene": True}

"""The judge's fixed evaluation set and scoring of a model directory against it."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image

from demo_model.captions import caption
from demo_model.judge import ATTRIBUTES, judge, request_of
from demo_model.world import (
    HELD_OUT_COLOUR_SHAPE,
    HELD_OUT_SHAPE_POSITION,
    Group,
    Picture,
    is_held_out,
    sample_picture,
)

EVAL_SEED = 20261203


@dataclass(frozen=True)
class Case:
    prompt: str
    picture: Picture
    seed: int
    held_out: bool


def evaluation_set(size: int = 320) -> list[Case]:
    """`size` prompt+seed pairs: pictures of the world, a fifth of them held-out combinations."""
    rng = random.Random(EVAL_SEED)
    cases: list[Case] = []
    held_target = size // 5
    while len(cases) < size - held_target:
        picture = sample_picture(rng, held_out=False)
        cases.append(Case(caption(picture, rng), picture, rng.randrange(2**31), False))
    colour, shape = HELD_OUT_COLOUR_SHAPE
    shape_2, position = HELD_OUT_SHAPE_POSITION
    while len(cases) < size:
        picture = sample_picture(rng, held_out=True)
        if picture.background == "scene" or len(picture.groups) != 1:
            continue
        group = picture.groups[0]
        if len(cases) % 2:
            group = replace(group, colour=colour, shape=shape)
        else:
            group = replace(group, shape=shape_2, position=position)
        if colour in picture.colours or not is_held_out(group):
            continue
        picture = replace(
            picture, groups=(Group(group.colour, group.shape, group.size, group.position, group.count),)
        )
        cases.append(Case(caption(picture, rng), picture, rng.randrange(2**31), True))
    return cases


Generate = Callable[[str, int], Image.Image]


def score(generate: Generate, cases: list[Case]) -> dict[str, Any]:
    """Accuracy per attribute, over seen and held-out cases, plus seconds per image."""
    totals: dict[str, Counter[str]] = {"seen": Counter(), "held_out": Counter()}
    right: dict[str, Counter[str]] = {"seen": Counter(), "held_out": Counter()}
    started = time.perf_counter()
    for case in cases:
        verdict = judge(generate(case.prompt, case.seed), request_of(case.picture))
        split = "held_out" if case.held_out else "seen"
        for attribute, ok in verdict.items():
            totals[split][attribute] += 1
            right[split][attribute] += ok
    seconds = (time.perf_counter() - started) / max(1, len(cases))
    result: dict[str, Any] = {"cases": len(cases), "seconds_per_image": round(seconds, 3)}
    for attribute in ATTRIBUTES:
        all_total = totals["seen"][attribute] + totals["held_out"][attribute]
        if all_total:
            result[attribute] = round(
                (right["seen"][attribute] + right["held_out"][attribute]) / all_total, 3
            )
        for split in ("seen", "held_out"):
            if totals[split][attribute]:
                result[f"{attribute}_{split}"] = round(right[split][attribute] / totals[split][attribute], 3)
    return result


def pipeline_generator(
    model: Path, *, guidance: float = 7.0, steps: int = 20, side: int = 256, device: str = "cpu"
) -> Generate:
    """Seeds draw the starting noise on the CPU, so a GPU renders the same cases as the CPU."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe: Any = StableDiffusionPipeline.from_pretrained(model, torch_dtype=torch.float32, safety_checker=None)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)

    def generate(prompt: str, seed: int) -> Image.Image:
        generator = torch.Generator().manual_seed(seed)
        result = pipe(
            prompt,
            height=side,
            width=side,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generator,
        )
        image: Image.Image = result.images[0]
        return image

    return generate

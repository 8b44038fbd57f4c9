"""The GPU recipe of the built-in model (demo_model/gpu_training.py), run small on the CPU.

What a GPU run depends on: the process pool draws the same pictures and captions as the world says,
the learning rate follows the time budget, and the two phases end in a diffusers folder that loads
and draws.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from demo_model import architecture, gpu_training
from demo_model.captions import caption
from demo_model.draw import render
from demo_model.training import tokenizer_for
from demo_model.world import sample_picture


def test_the_pool_draws_the_worlds_pictures_and_tokenizes_their_captions(tmp_path: Path) -> None:
    pixels, ids = gpu_training.draw_chunk((7, 3, 2))
    rng = random.Random(7)
    tokenizer = tokenizer_for(tmp_path)
    for index in range(3):
        picture = sample_picture(rng)
        assert np.array_equal(pixels[index], np.asarray(render(picture)))
        for written in range(2):
            text = caption(picture, rng)
            expected = tokenizer(text, padding="max_length", max_length=architecture.MAX_TOKENS).input_ids
            assert ids[index, written].tolist() == expected
            assert len(tokenizer.decode(ids[index, written], skip_special_tokens=True).split()) >= 3
    assert ids.shape == (3, 2, architecture.MAX_TOKENS)


def test_the_learning_rate_warms_up_then_follows_the_elapsed_share_of_the_budget() -> None:
    budget = gpu_training.Budget(seconds=0.2, peak=1e-3, warmup=2)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    budget.tick(optimizer)
    assert optimizer.param_groups[0]["lr"] == 5e-4
    budget.tick(optimizer)
    assert optimizer.param_groups[0]["lr"] > 9e-4
    time.sleep(0.25)
    assert not budget.running()
    budget.tick(optimizer)
    assert optimizer.param_groups[0]["lr"] == 1e-5


def test_both_phases_end_in_a_model_that_loads_and_draws(tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    work = str(tmp_path)
    gpu_training.main(
        [
            *("prepare", "--workdir", work, "--device", "cpu", "--pictures", "24", "--processes", "1"),
            *("--vae-seconds", "1", "--vae-batch", "2", "--ceiling-cases", "5"),
        ]
    )
    data = torch.load(tmp_path / "latents.pt", weights_only=False)
    assert data["latents"].shape == (24, 4, 32, 32) and data["ids"].shape[:2] == (24, 6)
    assert set(data["ceilings"]) == {"shipped", "new"}
    gpu_training.main(
        [
            *("denoiser", "--workdir", work, "--device", "cpu", "--name", "tiny", "--seconds", "1"),
            *("--batch", "2", "--channels", "16,32,64", "--text-dim", "32", "--eval-cases", "0"),
        ]
    )
    model = tmp_path / "out" / "tiny"
    recipe = json.loads((model / "recipe.json").read_text())
    assert recipe["steps"] >= 1 and recipe["channels"] == "16,32,64"
    pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red circle", height=64, width=64, num_inference_steps=2).images[0]
    assert image.size == (64, 64)

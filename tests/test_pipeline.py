"""Renders with the tiny random SD model on CPU; independent of Django."""

from __future__ import annotations

import io
import json
import pathlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from generations.thumbnails import webp_thumbnail
from gpu_worker.cache import ModelCache, model_bytes
from gpu_worker.encoders import png_with_parameters
from gpu_worker.model import LoadedModel, RenderSpec
from gpu_worker.pipeline import RenderCanceled, render
from gpu_worker.previews import latents_to_preview
from gpu_worker.speed import SpeedOptions
from gpu_worker.tiny_model import build_tiny_model, ensure_tiny_model


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("models") / "tiny-sd"
    assert ensure_tiny_model(path) is True
    return path


@pytest.fixture(scope="session")
def cache() -> ModelCache:
    return ModelCache(device="cpu", max_models=2)


@pytest.fixture(scope="session")
def model(cache: ModelCache, model_path: pathlib.Path) -> LoadedModel:
    return cache.get(str(model_path))


def small_spec(**overrides: object) -> RenderSpec:
    values: dict[str, object] = {
        "prompt": "a photo of a cat",
        "width": 128,
        "height": 128,
        "steps": 4,
        "seeds": [1],
    }
    values.update(overrides)
    return RenderSpec(**values)  # type: ignore[arg-type]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_model_directory_layout(model_path: pathlib.Path) -> None:
    index = json.loads((model_path / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None]
    assert index["requires_safety_checker"] is False
    for part in ("unet", "vae"):
        assert (model_path / part / "diffusion_pytorch_model.safetensors").is_file()
    assert (model_path / "text_encoder" / "model.safetensors").is_file()
    assert (model_path / "tokenizer" / "vocab.json").is_file()
    assert (model_path / "tokenizer" / "merges.txt").is_file()
    assert (model_path / "scheduler" / "scheduler_config.json").is_file()
    assert ensure_tiny_model(model_path) is False


def test_build_is_deterministic(tmp_path: pathlib.Path) -> None:
    build_tiny_model(tmp_path / "a", seed=3)
    build_tiny_model(tmp_path / "b", seed=3)
    build_tiny_model(tmp_path / "c", seed=4)
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (tmp_path / "a" / weights).read_bytes() == (tmp_path / "b" / weights).read_bytes()
    assert (tmp_path / "a" / weights).read_bytes() != (tmp_path / "c" / weights).read_bytes()


def test_concurrent_ensure_builds_once(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "shared" / "tiny-sd"
    with ThreadPoolExecutor(max_workers=3) as pool:
        built = list(pool.map(lambda _: ensure_tiny_model(path), range(3)))
    assert built.count(True) == 1
    assert (path / "model_index.json").is_file()
    assert [p.name for p in path.parent.iterdir()] == ["tiny-sd"]


def test_tokenizer_handles_prompts(model: LoadedModel) -> None:
    tokenizer = model.txt2img.tokenizer
    assert tokenizer.model_max_length == 77
    ids = tokenizer("A photo of the cat at night, 4k!").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert "photo</w>" in tokenizer.tokenize("photo")


def test_txt2img_512_batch_of_two(model: LoadedModel) -> None:
    spec = RenderSpec(prompt="a red city at night", width=512, height=512, steps=20, seeds=[7, 8])
    images = render(model, spec, None)
    assert [image.size for image in images] == [(512, 512), (512, 512)]
    assert all(image.mode == "RGB" for image in images)
    assert pixels(images[0]).std() > 5, "output should not be flat grey"


def test_seed_gives_same_image_alone_and_in_batch(model: LoadedModel) -> None:
    batch = render(model, small_spec(seeds=[5, 6]), None)
    alone = render(model, small_spec(seeds=[6]), None)
    assert np.abs(pixels(batch[1]) - pixels(alone[0])).max() <= 2


def test_different_seeds_differ(model: LoadedModel) -> None:
    first, second = render(model, small_spec(seeds=[10, 11]), None)
    assert np.abs(pixels(first) - pixels(second)).mean() > 5


def test_img2img_resizes_and_reports_actual_steps(model: LoadedModel) -> None:
    init = Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 200, 3), dtype=np.uint8))
    calls: list[tuple[int, int]] = []

    def on_step(step: int, total: int, latents: torch.Tensor) -> bool:
        calls.append((step, total))
        return True

    spec = small_spec(init_image=init, width=128, height=96, steps=8, strength=0.5, seeds=[1, 2])
    assert spec.denoising_steps == 4
    images = render(model, spec, on_step)
    assert [image.size for image in images] == [(128, 96), (128, 96)]
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert model.img2img.unet is model.txt2img.unet


def test_on_step_sees_increasing_steps_and_latents(model: LoadedModel) -> None:
    calls: list[tuple[int, int, tuple[int, ...]]] = []

    def on_step(step: int, total: int, latents: torch.Tensor) -> bool:
        calls.append((step, total, tuple(latents.shape)))
        return True

    render(model, small_spec(steps=5, seeds=[1, 2], width=128, height=64), on_step)
    assert calls == [(step, 5, (2, 4, 8, 16)) for step in range(1, 6)]


@pytest.mark.parametrize("img2img", [False, True])
def test_on_step_false_cancels_within_the_step(model: LoadedModel, img2img: bool) -> None:
    calls: list[int] = []

    def on_step(step: int, total: int, latents: torch.Tensor) -> bool:
        calls.append(step)
        return step < 2

    init = Image.new("RGB", (64, 64), "navy") if img2img else None
    with pytest.raises(RenderCanceled):
        render(model, small_spec(steps=10, strength=1.0, init_image=init), on_step)
    assert calls == [1, 2]
    # The model stays usable after a cancel.
    assert len(render(model, small_spec(), None)) == 1


def test_preview_is_a_small_jpeg() -> None:
    latents = torch.randn(2, 4, 64, 64)
    data = latents_to_preview(latents)
    preview = Image.open(io.BytesIO(data))
    assert preview.format == "JPEG"
    assert preview.size == (128, 128)
    assert len(data) < 20_000
    wide = Image.open(io.BytesIO(latents_to_preview(torch.randn(1, 4, 64, 96), max_side=96)))
    assert wide.size == (96, 64)


def test_png_embeds_parameters() -> None:
    parameters = {"prompt": "ein Café bei Nacht ☕", "seed": 42, "steps": 20, "guidance": 7.0}
    data = png_with_parameters(Image.new("RGB", (32, 16), "red"), parameters)
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.size == (32, 16)
    assert json.loads(image.text["parameters"]) == parameters  # type: ignore[attr-defined]


def test_webp_thumbnail_keeps_aspect() -> None:
    thumbnail = Image.open(io.BytesIO(webp_thumbnail(Image.new("RGB", (512, 256), "blue"))))
    assert thumbnail.format == "WEBP"
    assert thumbnail.size == (256, 128)


def test_cache_returns_same_object_without_reloading(
    cache: ModelCache, model: LoadedModel, model_path: pathlib.Path
) -> None:
    loads = cache.loads
    again = cache.get(str(model_path))
    assert again is model
    assert cache.get(str(model_path) + "/") is model
    assert cache.loads == loads
    assert model.load_seconds > 0


def test_cache_evicts_least_recently_used(tmp_path: pathlib.Path) -> None:
    paths = [str(tmp_path.resolve() / name) for name in ("a", "b", "c")]
    for seed, path in enumerate(paths):
        build_tiny_model(pathlib.Path(path), seed=seed)
    lru = ModelCache(max_models=2)
    first = lru.get(paths[0])
    lru.get(paths[1])
    assert lru.get(paths[0]) is first
    lru.get(paths[2])
    assert paths[1] not in lru
    assert lru.paths() == [paths[0], paths[2]]
    assert lru.loads == 3


def test_cache_demotes_hot_to_warm_to_cold_and_times_every_move(tmp_path: pathlib.Path) -> None:
    paths = [str(tmp_path.resolve() / name) for name in ("a", "b", "c")]
    for seed, path in enumerate(paths):
        build_tiny_model(pathlib.Path(path), seed=seed)
    tiers = ModelCache(max_models=1, max_warm=1)
    a = tiers.get(paths[0])
    tiers.get(paths[1])
    assert (tiers.paths(), tiers.warm_paths()) == ([paths[1]], [paths[0]])
    assert tiers.get(paths[0]) is a  # back from RAM, not reloaded
    tiers.get(paths[2])
    assert (tiers.paths(), tiers.warm_paths()) == ([paths[2]], [paths[0]])
    assert tiers.loads == 3
    kinds = [(event.kind, pathlib.Path(event.path).name) for event in tiers.events]
    assert kinds == [
        ("disk", "a"),
        ("to_ram", "a"),
        ("disk", "b"),
        ("to_ram", "b"),
        ("ram", "a"),
        ("to_ram", "a"),
        ("drop", "b"),
        ("disk", "c"),
    ]
    assert all(event.seconds >= 0 for event in tiers.events)


def test_cache_keeps_the_device_within_its_byte_budget(tmp_path: pathlib.Path) -> None:
    paths = [str(tmp_path.resolve() / name) for name in ("a", "b")]
    for seed, path in enumerate(paths):
        build_tiny_model(pathlib.Path(path), seed=seed)
    one = model_bytes(ModelCache().get(paths[0]))
    budgeted = ModelCache(max_models=3, device_budget=one + one // 2)
    budgeted.get(paths[0])
    budgeted.get(paths[1])
    assert budgeted.paths() == [paths[1]]


def test_speed_options_change_how_the_model_runs_not_what_it_draws(model_path: pathlib.Path) -> None:
    spec = RenderSpec(prompt="a lighthouse", seeds=[3], width=64, height=64, steps=3)
    plain = ModelCache().get(str(model_path))
    assert all(type(p).__name__ == "AttnProcessor2_0" for p in plain.denoiser.attn_processors.values())
    reference = np.asarray(render(plain, spec)[0], np.int16)

    fast = ModelCache().get(str(model_path), SpeedOptions(channels_last=True))
    conv = fast.denoiser.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert np.abs(np.asarray(render(fast, spec)[0], np.int16) - reference).max() <= 2

    half = ModelCache().get(str(model_path), SpeedOptions(dtype="bfloat16"))
    assert half.denoiser.dtype == torch.bfloat16
    assert np.abs(np.asarray(render(half, spec)[0], np.int16) - reference).mean() < 8


def test_compiling_warms_the_declared_sizes_at_load(model_path: pathlib.Path) -> None:
    torch._dynamo.reset()
    options = SpeedOptions(
        compile=True, compile_sizes=((64, 64), (96, 64)), max_batch=2, compile_backend="eager"
    )
    cache = ModelCache()
    compiled = cache.get(str(model_path), options)
    assert [event.kind for event in cache.events] == ["compile", "disk"]
    assert compiled.denoiser._compiled_call_impl is not None
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert frames >= 2  # the declared sizes were traced before any job asked for them
    image = render(compiled, RenderSpec(prompt="after", seeds=[1], width=96, height=64, steps=2))[0]
    assert image.size == (96, 64)

"""Single-file checkpoints of every family: written from the tiny diffusers directory in the original
key layout, loaded by the worker's cache through diffusers' `from_single_file`, offline."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.model_catalog import ModelSpec, parse_models
from gpu_worker.cache import ModelCache
from gpu_worker.model import LoadedModel, RenderSpec
from gpu_worker.pipeline import render
from gpu_worker.single_file import write_config_dir, write_single_file
from gpu_worker.tiny_families import FAMILIES, build_family

# Keys the original repositories (and diffusers' single-file loader) look for, per family.
ORIGINAL_KEYS = {
    "sd15": [
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight",
        "model.diffusion_model.input_blocks.2.0.op.weight",
        "model.diffusion_model.output_blocks.1.2.conv.weight",
        "model.diffusion_model.output_blocks.5.0.skip_connection.weight",
        "first_stage_model.decoder.up.0.block.0.conv1.weight",
        "first_stage_model.encoder.mid.attn_1.q.weight",
        "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
    ],
    "sd2": [
        "model.diffusion_model.input_blocks.5.1.proj_in.weight",
        "cond_stage_model.model.token_embedding.weight",
        "cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight",
    ],
    "sdxl": [
        "model.diffusion_model.label_emb.0.0.weight",
        "model.diffusion_model.input_blocks.5.1.transformer_blocks.1.attn1.to_q.weight",
        "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight",
        "conditioner.embedders.1.model.positional_embedding",
        "conditioner.embedders.1.model.text_projection",
    ],
    "sd3": [
        "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight",
        "model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias",
        "model.diffusion_model.final_layer.adaLN_modulation.1.weight",
        "first_stage_model.decoder.conv_out.weight",
        "text_encoders.clip_l.transformer.text_model.embeddings.position_embedding.weight",
        "text_encoders.clip_g.transformer.text_model.embeddings.position_embedding.weight",
    ],
}
ORIGINAL_KEYS["sdxl-turbo"] = ORIGINAL_KEYS["sdxl"]
ORIGINAL_PREFIXES = (
    "model.diffusion_model.",
    "first_stage_model.",
    "cond_stage_model.",
    "conditioner.embedders.",
    "text_encoders.",
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Per family: the tiny diffusers directory, its configs without weights, and its single file."""
    root = tmp_path_factory.mktemp("single-file")
    for family in FAMILIES:
        build_family(family, root / family)
        write_config_dir(root / family, root / f"{family}-config")
        write_single_file(root / family, root / f"{family}.safetensors")
    return root


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(max_models=2 * len(FAMILIES) + 2)


def both(cache: ModelCache, root: pathlib.Path, family: str) -> tuple[LoadedModel, LoadedModel]:
    """The family's model from its directory and from its single file."""
    directory = cache.get(str(root / family))
    single = cache.get(str(root / f"{family}.safetensors"), config=str(root / f"{family}-config"))
    return directory, single


def settings_for(family: str) -> dict[str, Any]:
    return {"steps": 2, "guidance": 0.0} if family == "sdxl-turbo" else {"steps": 3, "guidance": 5.0}


@pytest.mark.parametrize("family", FAMILIES)
def test_it_writes_the_original_key_layout(family: str, root: pathlib.Path) -> None:
    keys = set(load_file(root / f"{family}.safetensors"))
    assert set(ORIGINAL_KEYS[family]) <= keys
    assert all(key.startswith(ORIGINAL_PREFIXES) for key in keys)
    assert not any(path.suffix == ".safetensors" for path in (root / f"{family}-config").rglob("*"))


@pytest.mark.parametrize("family", FAMILIES)
def test_it_loads_every_weight_of_the_directory_from_the_single_file(
    family: str, root: pathlib.Path, cache: ModelCache
) -> None:
    directory, single = both(cache, root, family)
    assert type(single.txt2img) is type(directory.txt2img)
    modules = {n: c for n, c in directory.txt2img.components.items() if isinstance(c, torch.nn.Module)}
    assert {"vae", "text_encoder"} <= modules.keys()
    for name, module in modules.items():
        expected, loaded = module.state_dict(), single.txt2img.components[name].state_dict()
        assert loaded.keys() == expected.keys(), name
        for key, tensor in expected.items():
            assert not loaded[key].is_meta, f"{name}.{key} was not in the single file"
            assert torch.equal(loaded[key], tensor), f"{name}.{key}"


@pytest.mark.parametrize("family", FAMILIES)
def test_it_renders_the_same_image_from_the_single_file(
    family: str, root: pathlib.Path, cache: ModelCache
) -> None:
    directory, single = both(cache, root, family)
    spec = RenderSpec(prompt="a red boat at night", seeds=[7], width=64, height=64, **settings_for(family))
    (expected,) = render(directory, spec)
    (image,) = render(single, spec)
    assert np.abs(np.asarray(image, np.int16) - np.asarray(expected, np.int16)).max() <= 2
    assert np.asarray(image).std() > 1, "a flat image would match anything"
    assert torch.allclose(single.preview_factors, directory.preview_factors, atol=1e-4)
    # img2img runs on the same components, as for a directory.
    variation = RenderSpec(
        prompt="the same boat", seeds=[8], width=64, height=64, init_image=image, strength=0.5, steps=4
    )
    (varied,) = render(single, variation)
    assert varied.size == (64, 64)
    assert single.img2img.components["vae"] is single.txt2img.components["vae"]


def test_a_pickled_ckpt_loads_like_a_safetensors_file(root: pathlib.Path, cache: ModelCache) -> None:
    write_single_file(root / "sd15", root / "sd15.ckpt")
    from_ckpt = cache.get(str(root / "sd15.ckpt"), config=str(root / "sd15-config"))
    _, from_safetensors = both(cache, root, "sd15")
    spec = RenderSpec(prompt="a lighthouse", seeds=[3], width=64, height=64, steps=3)
    (image,), (expected,) = render(from_ckpt, spec), render(from_safetensors, spec)
    assert np.array_equal(np.asarray(image), np.asarray(expected))


def test_a_symlinked_single_file_loads_by_its_own_name(root: pathlib.Path) -> None:
    """Hub caches and content stores link `name.safetensors` to a blob without a suffix."""
    blob = root / "store" / "3f9a0c"
    blob.parent.mkdir(exist_ok=True)
    write_single_file(root / "sd15", blob.with_suffix(".safetensors"))
    blob.with_suffix(".safetensors").rename(blob)
    link = root / "linked.safetensors"
    link.symlink_to(blob)
    model = ModelCache().get(str(link), config=str(root / "sd15-config"))
    spec = RenderSpec(prompt="a lighthouse", seeds=[3], width=64, height=64, steps=3)
    directory = ModelCache().get(str(root / "sd15"))
    (image,), (expected,) = render(model, spec), render(directory, spec)
    assert np.array_equal(np.asarray(image), np.asarray(expected))


def test_single_files_move_through_the_tiers_like_directories(root: pathlib.Path) -> None:
    file, config = str(root / "sd15.safetensors"), str(root / "sd15-config")
    tiers = ModelCache(max_models=1, max_warm=1)
    first = tiers.get(file, config=config)
    tiers.get(str(root / "sd2"))
    assert tiers.warm_paths() == [file]
    assert tiers.get(file) is first  # back from RAM: the config is only needed to load from disk
    kinds = [(event.kind, pathlib.Path(event.path).name) for event in tiers.events]
    assert kinds == [
        ("disk", "sd15.safetensors"),
        ("to_ram", "sd15.safetensors"),
        ("disk", "sd2"),
        ("to_ram", "sd2"),
        ("ram", "sd15.safetensors"),
    ]
    assert tiers.events[0].seconds > 0


def test_the_cache_refuses_a_single_file_without_its_config(root: pathlib.Path) -> None:
    with pytest.raises(ValueError, match=r"sd15\.safetensors is a single-file checkpoint"):
        ModelCache().get(str(root / "sd15.safetensors"))


def test_settings_refuse_a_single_file_without_a_config(tmp_path: pathlib.Path) -> None:
    declared = [{"name": "dreamy", "path": "/models/dreamy.safetensors", "family": "sdxl"}]
    with pytest.raises(ValueError, match=r"model 'dreamy' is a single-file checkpoint .* needs a \"config\""):
        parse_models(json.dumps(declared), tmp_path)
    with pytest.raises(ValueError, match=r"model 'old' is a single-file checkpoint"):
        parse_models("old=/models/old.CKPT", tmp_path)
    with pytest.raises(ValueError, match=r"model 'dir' has a config but its path is not a single file"):
        parse_models(json.dumps([{"name": "dir", "path": "/models/sdxl", "config": "/models/x"}]), tmp_path)


def test_settings_declare_a_single_file_with_its_limits_and_defaults(tmp_path: pathlib.Path) -> None:
    declared = {
        "name": "dreamy",
        "path": "/models/dreamy.safetensors",
        "config": "/models/configs/sdxl",
        "family": "sdxl-turbo",
        "default_steps": 4,
        "default_guidance": 0.0,
        "max_side": 1024,
    }
    spec = parse_models(json.dumps([declared]), tmp_path)["dreamy"]
    assert (spec.path, spec.config, spec.pool, spec.family) == (
        "/models/dreamy.safetensors",
        "/models/configs/sdxl",
        "dreamy",
        "sdxl-turbo",
    )
    assert (spec.default_steps, spec.default_guidance, spec.max_side) == (4, 0.0, 1024)


@pytest.mark.django_db
def test_the_worker_runs_a_job_on_a_single_file_model(root: pathlib.Path, settings: Any) -> None:
    from accounts.models import User
    from tests.factories import queued_generation
    from tests.test_models_command import run_in_a_worker

    spec = ModelSpec(
        name="tiny-sdxl-file",
        path=str(root / "sdxl.safetensors"),
        config=str(root / "sdxl-config"),
        pool="sdxl-file",
        family="sdxl",
    )
    settings.ATELIER_MODELS = {**settings.ATELIER_MODELS, spec.name: spec}
    user = User.objects.create(username="fan-of-single-files")
    job = queued_generation(user, model_name=spec.name, pool=spec.pool, prompt="a kite", guidance=0.0, seed=1)
    assert run_in_a_worker(job) == [str((root / "sdxl.safetensors").resolve())]

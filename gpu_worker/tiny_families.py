"""Tiny, randomly initialised models of each supported family, built offline from their configs.

Each is a real diffusers directory of that family's layout (model_index.json names the pipeline
class), so the worker loads and runs it through exactly the code that loads the full-size model.
They exist so tests and CPU machines can exercise every family without downloading weights.

| family     | pipeline                    | denoiser                                | latents |
|------------|-----------------------------|-----------------------------------------|---------|
| sd15       | StableDiffusionPipeline     | UNet, CLIP text encoder                  | 4 ch    |
| sd2        | StableDiffusionPipeline     | UNet with linear projections, v-pred    | 4 ch    |
| sdxl       | StableDiffusionXLPipeline   | UNet with text/time embeddings, 2 CLIPs | 4 ch    |
| sdxl-turbo | StableDiffusionXLPipeline   | as sdxl, trailing Euler-ancestral steps | 4 ch    |
| sd3        | StableDiffusion3Pipeline    | MMDiT transformer, flow matching, 2 CLIPs (T5 dropped) | 16 ch |
"""

from __future__ import annotations

import pathlib
import tempfile
from collections.abc import Callable
from typing import Any

import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from core.model_catalog import FAMILIES as MODEL_FAMILIES
from gpu_worker.tiny_model import TEXT_DIM, build_tiny_model, build_tokenizer, small_vae

FAMILIES = tuple(f for f in MODEL_FAMILIES if f != "noop")


# The second text encoder of SDXL and SD3 is wider than the first, as in the real models (OpenCLIP
# bigG, 1280, next to OpenAI's CLIP-L, 768): single-file loading tells the two apart by their width.
SECOND_TEXT_DIM = 48


def clip_config(tokenizer: CLIPTokenizer, width: int = TEXT_DIM) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=width,
        hidden_act="gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_sd2(path: pathlib.Path, tokenizer: CLIPTokenizer) -> None:
    unet = UNet2DConditionModel(
        sample_size=96,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=(2, 4, 8),
        use_linear_projection=True,
        norm_num_groups=8,
    )
    scheduler = DPMSolverMultistepScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        timestep_spacing="leading",
        steps_offset=1,
    )
    pipe: Any = StableDiffusionPipeline(
        vae=small_vae(scaling_factor=0.18215),
        text_encoder=CLIPTextModel(clip_config(tokenizer)),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)


def build_sdxl(path: pathlib.Path, tokenizer: CLIPTokenizer, *, turbo: bool = False) -> None:
    time_dim = 8
    unet = UNet2DConditionModel(
        sample_size=128,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4, 8),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        transformer_layers_per_block=(1, 1, 2),
        # Six size/crop numbers, each embedded in time_dim, plus the second encoder's pooled output.
        projection_class_embeddings_input_dim=6 * time_dim + SECOND_TEXT_DIM,
        cross_attention_dim=TEXT_DIM + SECOND_TEXT_DIM,  # both encoders' hidden states side by side
        norm_num_groups=8,
    )
    scheduler: Any
    if turbo:  # few-step distilled models: ancestral Euler on trailing timesteps, no guidance
        scheduler = EulerAncestralDiscreteScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, timestep_spacing="trailing"
        )
    else:
        scheduler = EulerDiscreteScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            timestep_spacing="leading",
            steps_offset=1,
        )
    pipe: Any = StableDiffusionXLPipeline(
        vae=small_vae(scaling_factor=0.13025),
        text_encoder=CLIPTextModel(clip_config(tokenizer)),
        text_encoder_2=CLIPTextModelWithProjection(clip_config(tokenizer, SECOND_TEXT_DIM)),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.save_pretrained(path, safe_serialization=True)


def build_sd3(path: pathlib.Path, tokenizer: CLIPTokenizer) -> None:
    heads, head_dim = 4, 8
    transformer = SD3Transformer2DModel(
        sample_size=64,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=TEXT_DIM + SECOND_TEXT_DIM,  # the two CLIPs' hidden states, side by side
        caption_projection_dim=heads * head_dim,
        pooled_projection_dim=TEXT_DIM + SECOND_TEXT_DIM,  # both pooled projections
        pos_embed_max_size=96,
    )
    clip_l = CLIPTextModelWithProjection(clip_config(tokenizer))
    # SD3 single files hold CLIP-L without a projection, which diffusers then loads as the identity.
    with torch.no_grad():
        clip_l.text_projection.weight.copy_(torch.eye(TEXT_DIM))
    pipe: Any = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=small_vae(
            16, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False
        ),
        text_encoder=clip_l,
        tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(clip_config(tokenizer, SECOND_TEXT_DIM)),
        tokenizer_2=tokenizer,
        # The T5 encoder is optional in SD3; without it the pipeline pads with zeros.
        text_encoder_3=None,
        tokenizer_3=None,
    )
    pipe.save_pretrained(path, safe_serialization=True)


def build_family(family: str, path: pathlib.Path, *, seed: int = 0) -> None:
    """Write a tiny model of `family` to `path`."""
    if family == "sd15":
        build_tiny_model(path, seed=seed)
        return
    builders: dict[str, Callable[[pathlib.Path, CLIPTokenizer], None]] = {
        "sd2": build_sd2,
        "sdxl": build_sdxl,
        "sdxl-turbo": lambda p, t: build_sdxl(p, t, turbo=True),
        "sd3": build_sd3,
    }
    if family not in builders:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    with tempfile.TemporaryDirectory() as workdir:
        tokenizer = build_tokenizer(pathlib.Path(workdir))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        builders[family](pathlib.Path(path), tokenizer)

"""The built-in model's parts, in the diffusers Stable Diffusion layout.

An 8x VAE with SD's four latent channels (256x256 pictures become 32x32x4 latents; SD 1.x
pipelines, inpainting's included, expect four), a two-layer CLIP text encoder over a word-level
vocabulary of the picture world, and a lean UNet with attention at 16x16 and 8x8 only.
"""

from __future__ import annotations

from typing import Any

from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

TEXT_DIM = 64
MAX_TOKENS = 48
LATENT_CHANNELS = 4
SIDE = 256
LATENT_SIDE = 32


def build_vae() -> Any:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 64, 128),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        # Few groups: with one channel per group a flat colour normalises to zero and is lost.
        norm_num_groups=4,
        sample_size=SIDE,
        # No attention in the middle block: the VAE is fully convolutional, so it trains on crops.
        mid_block_add_attention=False,
    )


def build_text_encoder(
    vocab_size: int, *, bos: int, eos: int, pad: int, dim: int = TEXT_DIM, layers: int = 2
) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=dim,
        intermediate_size=dim * 4,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=dim,
        hidden_act="quick_gelu",
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    return CLIPTextModel(config)


def build_unet(
    channels: tuple[int, int, int] = (32, 64, 128), text_dim: int = TEXT_DIM
) -> UNet2DConditionModel:
    """(48, 96, 192) costs about 6 % more time per step on a 2-core CPU than the default (overheads
    dominate at this size); (64, 128, 256) about 65 % more."""
    return UNet2DConditionModel(
        sample_size=LATENT_SIDE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        block_out_channels=channels,
        layers_per_block=1,
        # Self-attention over 32x32 tokens would dominate CPU time: the first level is convolutions.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=text_dim,
        attention_head_dim=4,
        norm_num_groups=8,
    )


SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "v_prediction",
    "timestep_spacing": "trailing",
    "steps_offset": 1,
}


def build_scheduler(*, zero_snr: bool = False) -> DPMSolverMultistepScheduler:
    """DPM++ 2M at 20 steps; v-prediction and trailing spacing start sampling from (almost) pure noise.

    ``zero_snr`` rescales the betas so that no signal is left at the last training step: with SD's
    schedule about 7 % of the picture survives at t=999, so training teaches the model to read the
    background colour from the "noise", and at sampling, where there is none, it copies a random one
    (Lin et al. 2023). Run 3 (docs/benchmarks.md) took background colour from 0.41 to 0.78 with it."""
    return DPMSolverMultistepScheduler(
        **SCHEDULER_CONFIG, rescale_betas_zero_snr=zero_snr, algorithm_type="dpmsolver++", solver_order=2
    )

"""A Stable Diffusion 1.5-architecture model with random weights, built from its config offline.

Same shapes as the released SD 1.5 (UNet 860M parameters, VAE 84M, CLIP ViT-L/14 text encoder
123M), so it costs the same FLOPs and memory; only the weights are random. The tokenizer is the
built-in model's small BPE vocabulary, whose ids all fall inside CLIP's 49,408.
"""

from __future__ import annotations

import pathlib
import tempfile
from typing import Any

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from gpu_worker.tiny_model import build_scheduler, build_tokenizer


def build_sd15(
    path: pathlib.Path, *, device: str = "cpu", dtype: torch.dtype = torch.float16
) -> dict[str, int]:
    """Write the model to `path` as a diffusers directory; returns parameter counts."""
    with tempfile.TemporaryDirectory() as workdir:
        tokenizer = build_tokenizer(pathlib.Path(workdir))
    torch.manual_seed(0)
    with torch.device(device):
        unet: Any = UNet2DConditionModel(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768,
            attention_head_dim=8,
        )
        vae: Any = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
            sample_size=512,
            scaling_factor=0.18215,
        )
        text_encoder: Any = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408,
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                max_position_embeddings=77,
                hidden_act="quick_gelu",
                projection_dim=768,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    pipe: Any = StableDiffusionPipeline(
        vae=vae.to(dtype),
        text_encoder=text_encoder.to(dtype),
        tokenizer=tokenizer,
        unet=unet.to(dtype),
        scheduler=build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    modules: dict[str, torch.nn.Module] = {"unet": unet, "vae": vae, "text_encoder": text_encoder}
    return {name: sum(p.numel() for p in module.parameters()) for name, module in modules.items()}

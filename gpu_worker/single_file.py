"""Writes a diffusers directory as one single-file checkpoint, in the original repositories' layout.

This is the format A1111, ComfyUI and Civitai pass around; the worker reads it with diffusers' own
`from_single_file` (gpu_worker/cache.py). Writing it lets tests and CPU machines turn the tiny
families into that format without downloading anything.

| family | denoiser (`model.diffusion_model.`) | text encoders                                           |
|--------|-------------------------------------|---------------------------------------------------------|
| SD 1.x | LDM UNet                            | `cond_stage_model.transformer.` (CLIP)                  |
| SD 2.x | LDM UNet                            | `cond_stage_model.model.` (OpenCLIP)                    |
| SDXL   | LDM UNet with `label_emb`           | `conditioner.embedders.0.transformer.` (CLIP),          |
|        |                                     | `conditioner.embedders.1.model.` (OpenCLIP)             |
| SD3    | MMDiT (`joint_blocks`)              | `text_encoders.clip_l.transformer.`, `...clip_g...`     |

The VAE is always the LDM autoencoder under `first_stage_model.`.
SD 1.x and 2.x share a pipeline class; OpenAI's CLIP uses quick_gelu and OpenCLIP gelu, which is how
the text encoder's layout is chosen.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import torch
from safetensors.torch import load_file, save_file

from core.model_catalog import SINGLE_FILE_SUFFIXES

StateDict = dict[str, torch.Tensor]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
# diffusers name -> original name, inside one UNet or VAE resnet.
UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def read_component(model_dir: pathlib.Path, name: str) -> StateDict:
    folder = model_dir / name
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no .safetensors weights")
    state: StateDict = {}
    for file in files:
        state.update(load_file(file))
    return state


def read_config(model_dir: pathlib.Path, name: str) -> dict:
    folder = model_dir / name
    config_file = folder / ("config.json" if name else "model_index.json")
    return dict(json.loads(config_file.read_text()))


def split_first(key: str, prefix: str) -> tuple[int, str]:
    """`key` = prefix + "<n>." + rest -> (n, rest)."""
    number, _, rest = key[len(prefix) :].partition(".")
    return int(number), rest


def rename(name: str, table: dict[str, str]) -> str:
    for new, old in table.items():
        if name == new or name.startswith(new + "."):
            return old + name[len(new) :]
    return name


def unet_to_original(state: StateDict, layers_per_block: int) -> StateDict:
    """The LDM UNet: input_blocks / middle_block / output_blocks, numbered layer by layer."""
    # Each down block is its layers then a downsampler; each up block has one layer more.
    per_down, per_up = layers_per_block + 1, layers_per_block + 1
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    up_attentions = {
        split_first(key, "up_blocks.")[0]
        for key in state
        if key.startswith("up_blocks.") and ".attentions." in key
    }
    out: StateDict = {}
    for key, tensor in state.items():
        if key.startswith("down_blocks."):
            block, rest = split_first(key, "down_blocks.")
            if rest.startswith("downsamplers.0.conv."):
                name = f"input_blocks.{1 + block * per_down + layers_per_block}.0.op." + rest.split(".")[-1]
            else:
                kind, _, rest = rest.partition(".")
                layer, rest = split_first(rest, "")
                slot = "0." + rename(rest, UNET_RESNET) if kind == "resnets" else "1." + rest
                name = f"input_blocks.{1 + block * per_down + layer}.{slot}"
        elif key.startswith("mid_block."):
            kind, _, rest = key[len("mid_block.") :].partition(".")
            layer, rest = split_first(rest, "")
            if kind == "resnets":
                name = f"middle_block.{2 * layer}." + rename(rest, UNET_RESNET)
            else:
                name = f"middle_block.{2 * layer + 1}.{rest}"
        elif key.startswith("up_blocks."):
            block, rest = split_first(key, "up_blocks.")
            if rest.startswith("upsamplers.0.conv."):
                after = 2 if block in up_attentions else 1  # the upsampler follows the attention, if any
                name = (
                    f"output_blocks.{block * per_up + layers_per_block}.{after}.conv." + rest.split(".")[-1]
                )
            else:
                kind, _, rest = rest.partition(".")
                layer, rest = split_first(rest, "")
                slot = "0." + rename(rest, UNET_RESNET) if kind == "resnets" else "1." + rest
                name = f"output_blocks.{block * per_up + layer}.{slot}"
        else:
            name = rename(key, fixed)
        out[UNET_PREFIX + name] = tensor
    return out


def vae_to_original(state: StateDict, num_blocks: int) -> StateDict:
    """The LDM autoencoder: the decoder's up blocks are numbered from the bottom, attention is 1x1 conv."""
    out: StateDict = {}
    for key, tensor in state.items():
        part, _, rest = key.partition(".")
        if rest.startswith("down_blocks."):
            block, rest = split_first(rest, "down_blocks.")
            rest = rest.replace("resnets.", "block.", 1).replace("downsamplers.0.", "downsample.", 1)
            name = f"{part}.down.{block}.{rest}"
        elif rest.startswith("up_blocks."):
            block, rest = split_first(rest, "up_blocks.")
            rest = rest.replace("resnets.", "block.", 1).replace("upsamplers.0.", "upsample.", 1)
            name = f"{part}.up.{num_blocks - 1 - block}.{rest}"
        elif rest.startswith("mid_block.resnets."):
            layer, rest = split_first(rest, "mid_block.resnets.")
            name = f"{part}.mid.block_{layer + 1}.{rest}"
        elif rest.startswith("mid_block.attentions.0."):
            rest = rename(rest[len("mid_block.attentions.0.") :], VAE_ATTENTION)
            name = f"{part}.mid.attn_1.{rest}"
            if tensor.ndim == 2:
                tensor = tensor[:, :, None, None]
        else:
            name = key.replace("conv_norm_out", "norm_out")
        out[VAE_PREFIX + name.replace("conv_shortcut", "nin_shortcut")] = tensor
    return out


def clip_to_open_clip(state: StateDict, prefix: str) -> StateDict:
    """OpenCLIP's text tower: fused q/k/v, `resblocks`, a (width, projection) text projection."""
    fixed = {
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    out: StateDict = {}
    layers = "text_model.encoder.layers."
    for key, tensor in state.items():
        if key in fixed:
            out[prefix + fixed[key]] = tensor
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = tensor.T
        elif key.startswith(layers) and ".self_attn.q_proj." in key:
            layer, rest = split_first(key, layers)
            kind = rest.rsplit(".", 1)[1]
            fused = [state[key.replace(".q_proj.", f".{p}_proj.")] for p in "qkv"]
            out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat(fused)
        elif key.startswith(layers) and not any(f".{p}_proj." in key for p in "kv"):
            layer, rest = split_first(key, layers)
            out[f"{prefix}transformer.resblocks.{layer}.{rename(rest, CLIP_LAYER)}"] = tensor
    return out


def mmdit_to_original(state: StateDict, num_layers: int) -> StateDict:
    """SD3's MMDiT: fused q/k/v per stream; the last block's context stream only modulates, and
    final modulations are stored (shift, scale) where diffusers keeps (scale, shift)."""

    def swap_halves(tensor: torch.Tensor) -> torch.Tensor:
        first, second = tensor.chunk(2, dim=0)
        return torch.cat([second, first])

    fixed = {
        "pos_embed.pos_embed": "pos_embed",
        "pos_embed.proj": "x_embedder.proj",
        "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
        "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
        "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
        "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
        "context_embedder": "context_embedder",
        "proj_out": "final_layer.linear",
        "norm_out.linear": "final_layer.adaLN_modulation.1",
    }
    block = {
        "attn.to_out.0": "x_block.attn.proj",
        "attn.to_add_out": "context_block.attn.proj",
        "norm1.linear": "x_block.adaLN_modulation.1",
        "norm1_context.linear": "context_block.adaLN_modulation.1",
        "ff.net.0.proj": "x_block.mlp.fc1",
        "ff.net.2": "x_block.mlp.fc2",
        "ff_context.net.0.proj": "context_block.mlp.fc1",
        "ff_context.net.2": "context_block.mlp.fc2",
    }
    # Each stream's q, k and v are one fused matrix in the original.
    fused = {
        "attn.to_q": ("x_block.attn.qkv", ("attn.to_q", "attn.to_k", "attn.to_v")),
        "attn.add_q_proj": (
            "context_block.attn.qkv",
            ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
        ),
    }
    folded_in = {"attn.to_k", "attn.to_v", "attn.add_k_proj", "attn.add_v_proj"}
    out: StateDict = {}
    for key, tensor in state.items():
        if not key.startswith("transformer_blocks."):
            if key.startswith("norm_out.linear."):
                tensor = swap_halves(tensor)
            out[UNET_PREFIX + rename(key, fixed)] = tensor
            continue
        layer, rest = split_first(key, "transformer_blocks.")
        module, kind = rest.rsplit(".", 1)
        original = f"{UNET_PREFIX}joint_blocks.{layer}."
        if module in fused:
            name, parts = fused[module]
            out[original + f"{name}.{kind}"] = torch.cat(
                [state[f"transformer_blocks.{layer}.{part}.{kind}"] for part in parts]
            )
        elif module in block:
            if module == "norm1_context.linear" and layer == num_layers - 1:
                tensor = swap_halves(tensor)
            out[original + f"{block[module]}.{kind}"] = tensor
        elif module not in folded_in:
            raise ValueError(f"no original name for {key}")
    return out


def with_prefix(state: StateDict, prefix: str) -> StateDict:
    return {prefix + key: tensor for key, tensor in state.items()}


def original_state_dict(model_dir: pathlib.Path) -> StateDict:
    """All of the pipeline's weights under their original names."""
    pipeline = read_config(model_dir, "")["_class_name"]
    vae_config = read_config(model_dir, "vae")
    out = vae_to_original(read_component(model_dir, "vae"), len(vae_config["up_block_types"]))
    if pipeline == "StableDiffusion3Pipeline":
        transformer = read_config(model_dir, "transformer")
        out |= mmdit_to_original(read_component(model_dir, "transformer"), transformer["num_layers"])
        out |= with_prefix(read_component(model_dir, "text_encoder"), "text_encoders.clip_l.transformer.")
        out |= with_prefix(read_component(model_dir, "text_encoder_2"), "text_encoders.clip_g.transformer.")
        return out
    unet = read_config(model_dir, "unet")
    out |= unet_to_original(read_component(model_dir, "unet"), unet["layers_per_block"])
    if pipeline == "StableDiffusionXLPipeline":
        clip, open_clip = (read_component(model_dir, name) for name in ("text_encoder", "text_encoder_2"))
        out |= with_prefix(clip, "conditioner.embedders.0.transformer.")
        out |= clip_to_open_clip(open_clip, "conditioner.embedders.1.model.")
    elif pipeline == "StableDiffusionPipeline":
        text_encoder = read_component(model_dir, "text_encoder")
        if read_config(model_dir, "text_encoder")["hidden_act"] == "quick_gelu":
            out |= with_prefix(text_encoder, "cond_stage_model.transformer.")
        else:
            out |= clip_to_open_clip(text_encoder, "cond_stage_model.model.")
    else:
        raise ValueError(f"{model_dir}: no single-file layout for {pipeline}")
    return out


def write_single_file(model_dir: pathlib.Path, target: pathlib.Path) -> None:
    """Write the diffusers directory `model_dir` as one `.safetensors` (or pickled `.ckpt`) file."""
    model_dir, target = pathlib.Path(model_dir), pathlib.Path(target)
    if target.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise ValueError(f"{target}: a single file ends in {' or '.join(SINGLE_FILE_SUFFIXES)}")
    state = {key: tensor.contiguous() for key, tensor in original_state_dict(model_dir).items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() == ".safetensors":
        save_file(state, target)
    else:
        torch.save({"state_dict": state}, target)


def write_config_dir(model_dir: pathlib.Path, target: pathlib.Path) -> None:
    """Copy `model_dir` without its weights: the configs and tokenizers a single file is loaded with."""
    weights = ("*.safetensors", "*.bin", "*.ckpt", "*.pt", "*.pth")
    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns(*weights))

"""A LoRA for the built-in model, trained by the project: the "monochrome" style.

The picture world's renders in greys (each pixel's brightness, Rec. 601 luma) are the targets.
The base model stays frozen; only rank-``r`` pairs on the UNet's attention projections (``to_q``,
``to_k``, ``to_v``, ``to_out.0`` of every attention) and on its transformer blocks' feed-forward
layers learn. The file is written in the diffusers/PEFT key layout (``unet.<module>.lora_A.weight``
/ ``.lora_B.weight`` / ``.alpha``) that ``gpu_worker/loras.py`` reads, so it goes through the same
loader as any downloaded LoRA.

A sepia toning was tried first: the built-in VAE, trained on the world's saturated colours only,
cannot represent desaturated browns (it decodes them green), so the style stays within what it
can draw, and it draws greys.

Seeded and resumable: the training pictures and their latents are drawn once into the work folder,
and the LoRA's state is saved there every few minutes and resumed from.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from demo_model import architecture
from demo_model.draw import render
from demo_model.manifest import WEIGHTS
from demo_model.training import Checkpoint, cosine_lr, progress, to_tensor
from demo_model.world import sample_picture

TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
EMPTY_CAPTIONS = 0.3  # unconditional too: guidance then pushes within the style, not out of it
# Colours are decided at high noise (low SNR): this share of the samples is drawn from t >= 500.
HIGH_NOISE = 0.5


def monochrome(image: Image.Image) -> Image.Image:
    """The style's target for one picture: its brightness in grey."""
    grey = np.asarray(image.convert("RGB"), dtype=np.float32) @ LUMA
    return Image.fromarray(np.clip(grey, 0, 255).round().astype(np.uint8)).convert("RGB")


def colourfulness(image: Image.Image) -> float:
    """How far an image is from grey: the mean distance (of 255, per channel) between each pixel
    and the grey of its own brightness. 0 for a monochrome picture; 20-60 for the world's
    saturated colours."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    return float(np.abs(pixels - (pixels @ LUMA)[..., None]).mean())


@dataclass
class LoraPlan:
    workdir: Path
    weights: Path = WEIGHTS
    seed: int = 0
    pictures: int = 384
    steps: int = 350
    batch: int = 6
    rank: int = 8
    lr: float = 3e-3
    checkpoint_seconds: float = 60.0
    log: Callable[[str], None] = print


class LoraPair(torch.nn.Module):
    """One layer's trainable pair: ``up @ down`` added to its output (``up`` starts at zero, so
    training starts from the base model exactly)."""

    def __init__(self, layer: torch.nn.Linear, rank: int) -> None:
        super().__init__()
        self.down = torch.nn.Parameter(torch.randn(rank, layer.in_features) / layer.in_features**0.5)
        self.up = torch.nn.Parameter(torch.zeros(layer.out_features, rank))

    def hook(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> Any:
        return output + F.linear(F.linear(inputs[0], self.down), self.up)


def attention_layers(unet: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    return {
        name: module
        for name, module in unet.named_modules()
        if isinstance(module, torch.nn.Linear) and name.endswith(TARGETS) and ".transformer_blocks." in name
    }


def attach(unet: torch.nn.Module, rank: int) -> dict[str, LoraPair]:
    pairs = {}
    for name, layer in attention_layers(unet).items():
        pairs[name] = LoraPair(layer, rank)
        layer.register_forward_hook(pairs[name].hook)
    return pairs


def state_of(pairs: dict[str, LoraPair], rank: int) -> dict[str, torch.Tensor]:
    """The diffusers/PEFT layout, alpha = rank (scale 1), half precision: the repository carries it."""
    tensors: dict[str, torch.Tensor] = {}
    for name, pair in sorted(pairs.items()):
        tensors[f"unet.{name}.lora_A.weight"] = pair.down.detach().to(torch.float16).contiguous()
        tensors[f"unet.{name}.lora_B.weight"] = pair.up.detach().to(torch.float16).contiguous()
        tensors[f"unet.{name}.alpha"] = torch.tensor(float(rank), dtype=torch.float16)
    return tensors


def load_parts(weights: Path) -> tuple[Any, Any, Any, Any, torch.Tensor]:
    """The shipped model's tokenizer, text encoder, VAE and UNet (full precision, frozen) and its
    noise schedule."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(weights / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(weights / "text_encoder", torch_dtype=torch.float32)
    vae = AutoencoderKL.from_pretrained(weights / "vae", torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(weights / "unet", torch_dtype=torch.float32)
    for part in (text_encoder, vae, unet):
        part.requires_grad_(False)
        part.eval()
    scheduler: Any = DPMSolverMultistepScheduler.from_pretrained(weights / "scheduler")
    return tokenizer, text_encoder, vae, unet, scheduler.alphas_cumprod.float()


@torch.no_grad()
def training_set(plan: LoraPlan, tokenizer: Any, text_encoder: Any, vae: Any) -> dict[str, torch.Tensor]:
    """Latents of the pictures in grey and the embeddings of their captions (and of the empty
    caption), drawn once and kept in the work folder."""
    from demo_model.captions import caption

    path = plan.workdir / "monochrome-set.pt"
    if path.exists():
        data: dict[str, torch.Tensor] = torch.load(path)
        return data
    rng = random.Random(plan.seed)
    pictures = [sample_picture(rng) for _ in range(plan.pictures)]
    texts = [caption(picture, rng) for picture in pictures] + [""]
    embeddings = []
    for start in range(0, len(texts), 64):
        tokens = tokenizer(
            texts[start : start + 64],
            padding="max_length",
            max_length=architecture.MAX_TOKENS,
            truncation=True,
            return_tensors="pt",
        )
        embeddings.append(text_encoder(tokens.input_ids)[0])
    latents = []
    bar = progress(len(pictures), 0, "monochrome latents")
    for start in range(0, len(pictures), 32):
        batch = [monochrome(render(picture)) for picture in pictures[start : start + 32]]
        latents.append(vae.encode(to_tensor(batch)).latent_dist.mean * vae.config.scaling_factor)
        bar.update(len(batch))
    bar.close()
    data = {"latents": torch.cat(latents), "text": torch.cat(embeddings)}
    torch.save(data, path)
    return data


def lora_step(
    unet: Any,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor],
    alphas_cumprod: torch.Tensor,
) -> torch.Tensor:
    """One step on (latents, caption embeddings): the base model's own v-prediction loss (with the
    floor of 1 the model was trained with), gradients reaching only the LoRA pairs."""
    x0, text = batch
    noise = torch.randn_like(x0)
    total = len(alphas_cumprod)
    t = torch.randint(0, total, (len(x0),))
    high = torch.rand(len(x0)) < HIGH_NOISE
    t = torch.where(high, torch.randint(total // 2, total, (len(x0),)), t)
    ab = alphas_cumprod[t].view(-1, 1, 1, 1)
    noisy = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    target = ab.sqrt() * noise - (1 - ab).sqrt() * x0
    prediction = unet(noisy, t, text).sample
    snr = ab.view(-1) / (1 - ab.view(-1))
    weight = (torch.clamp(snr, max=5.0) + 1.0) / (snr + 1)
    loss = (weight * F.mse_loss(prediction, target, reduction="none").mean(dim=(1, 2, 3))).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def train_lora(plan: LoraPlan) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train (or resume) and return the LoRA's tensors and what went into them."""
    plan.workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tokenizer, text_encoder, vae, unet, alphas_cumprod = load_parts(plan.weights)
    data = training_set(plan, tokenizer, text_encoder, vae)
    torch.manual_seed(plan.seed)
    pairs = attach(unet, plan.rank)
    parameters = [p for pair in pairs.values() for p in pair.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=plan.lr, weight_decay=0.0)
    checkpoint = Checkpoint(plan.workdir / "monochrome-lora.pt", plan.checkpoint_seconds)
    step, rng, losses = 0, random.Random(plan.seed + 1), []
    if (state := checkpoint.load()) is not None:
        for name, pair in pairs.items():
            pair.load_state_dict(state["pairs"][name])
        optimizer.load_state_dict(state["optimizer"])
        step, rng, losses = state["step"], state["rng"], state["losses"]
        torch.set_rng_state(state["torch_rng"])
    empty = len(data["text"]) - 1
    bar = progress(plan.steps, step, "monochrome lora")
    while step < plan.steps:
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, plan.steps, plan.lr, warmup=20)
        index = [rng.randrange(len(data["latents"])) for _ in range(plan.batch)]
        captions = [empty if rng.random() < EMPTY_CAPTIONS else i for i in index]
        loss = lora_step(unet, optimizer, (data["latents"][index], data["text"][captions]), alphas_cumprod)
        losses.append(round(loss.item(), 5))
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        state = {
            "pairs": {name: pair.state_dict() for name, pair in pairs.items()},
            "optimizer": optimizer.state_dict(),
            "step": step,
            "rng": rng,
            "losses": losses,
            "torch_rng": torch.get_rng_state(),
        }
        checkpoint.save(state, force=step == plan.steps)
    bar.close()
    recipe = {
        "style": "monochrome",
        "base_model": "atelier-demo",
        "targets": [f"unet transformer blocks' {name}" for name in TARGETS],
        "high_noise_share": HIGH_NOISE,
        "layers": len(pairs),
        "rank": plan.rank,
        "alpha": plan.rank,
        "steps": plan.steps,
        "batch": plan.batch,
        "lr": plan.lr,
        "pictures": plan.pictures,
        "empty_captions": EMPTY_CAPTIONS,
        "seed": plan.seed,
        "loss_first_50": round(sum(losses[:50]) / max(1, len(losses[:50])), 5),
        "loss_last_50": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 5),
        "last_run_minutes": round((time.monotonic() - started) / 60, 1),
    }
    return state_of(pairs, plan.rank), recipe

"""Training the built-in model from scratch: VAE, then latents, then text encoder + UNet.

Each phase saves a checkpoint every few minutes into the work folder and resumes from it, so an
interrupted run goes on where it stopped. Seeded: the same command gives the same model on the
same machine and torch build.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm  # type: ignore[import-untyped]

from demo_model import architecture
from demo_model.draw import render
from demo_model.world import Picture, sample_picture


@dataclass
class Plan:
    workdir: Path
    device: str = "cpu"
    seed: int = 0
    vae_steps: int = 2500
    vae_batch: int = 16
    vae_crop: int = 64
    whole_steps: int = 150
    whole_batch: int = 4
    pictures: int = 4000
    unet_steps: int = 3500
    detail_steps: int = 0
    zero_snr: bool = False
    snr_floor: float = 1.0  # with zero_snr, outside the detail phase
    unet_batch: int = 24
    lr: float = 1e-3
    checkpoint_seconds: float = 120.0
    log: Callable[[str], None] = print


def to_tensor(images: list[Any]) -> torch.Tensor:
    array = np.stack([np.asarray(image, dtype=np.float32) for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0


def cosine_lr(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 1e-5 + (peak - 1e-5) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class Checkpoint:
    """A phase's state on disk, written atomically every `seconds`."""

    def __init__(self, path: Path, seconds: float) -> None:
        self.path = path
        self.seconds = seconds
        self.last = time.monotonic()

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        state: dict[str, Any] = torch.load(self.path, weights_only=False)
        return state

    def save(self, state: dict[str, Any], *, force: bool = False) -> None:
        if not force and time.monotonic() - self.last < self.seconds:
            return
        staging = self.path.with_suffix(".tmp")
        torch.save(state, staging)
        staging.replace(self.path)
        self.last = time.monotonic()


def progress(total: int, start: int, name: str) -> Any:
    return tqdm(total=total, initial=start, desc=name, unit="step", dynamic_ncols=True, mininterval=2.0)


def random_crops(rng: random.Random, batch: int, crop: int) -> torch.Tensor:
    """Crops of fresh pictures; three in four are the busiest of four candidates.

    Objects cover a small part of a picture: random crops are mostly flat background, and a VAE
    trained on them learns backgrounds well and objects' colours badly.
    """
    images = []
    for _ in range(batch):
        image = render(sample_picture(rng, held_out=True))
        candidates = [
            image.crop((x, y, x + crop, y + crop))
            for x, y in (
                (rng.randrange(0, 256 - crop + 1, 16), rng.randrange(0, 256 - crop + 1, 16)) for _ in range(4)
            )
        ]
        if rng.random() < 0.75:
            candidates.sort(key=lambda candidate: -float(np.asarray(candidate, dtype=np.float32).std()))
        images.append(candidates[0])
    return to_tensor(images)


def edges(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def train_vae(plan: Plan) -> Any:
    torch.manual_seed(plan.seed)
    vae = architecture.build_vae()
    with torch.no_grad():
        # Start with a small posterior variance: unit noise on the latents drowns the signal at first.
        vae.encoder.conv_out.bias[architecture.LATENT_CHANNELS :].fill_(-8.0)
    vae = vae.to(plan.device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=plan.lr, weight_decay=0.0)
    checkpoint = Checkpoint(plan.workdir / "vae.pt", plan.checkpoint_seconds)
    step, rng = 0, random.Random(plan.seed)
    if (state := checkpoint.load()) is not None:
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, rng = state["step"], state["rng"]
    bar = progress(plan.vae_steps, step, "vae")
    while step < plan.vae_steps:
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, plan.vae_steps, plan.lr, warmup=50)
        loss = vae_step(vae, optimizer, random_crops(rng, plan.vae_batch, plan.vae_crop).to(plan.device))
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        state = {"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "rng": rng}
        checkpoint.save(state, force=step == plan.vae_steps)
    bar.close()
    return vae.eval()


def vae_step(vae: Any, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> torch.Tensor:
    """One optimizer step of the VAE on pictures `x`; returns the loss."""
    posterior = vae.encode(x).latent_dist
    loss = reconstruction_loss(vae.decode(posterior.sample()).sample, x) + 1e-6 * posterior.kl().mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
    optimizer.step()
    loss_value: torch.Tensor = loss
    return loss_value


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    dy, dx = edges(recon)
    ty, tx = edges(x)
    edge = (dy - ty).abs().mean() + (dx - tx).abs().mean()
    # Colours averaged over 8x8 blocks: a small object's colour counts as much as the background's.
    colour = F.mse_loss(F.avg_pool2d(recon, 8), F.avg_pool2d(x, 8))
    return (recon - x).abs().mean() + F.mse_loss(recon, x) + 0.5 * edge + 2.0 * colour


def finetune_vae(plan: Plan, vae: Any) -> Any:
    """Encoder and decoder again on whole pictures, before any latents are taken.

    Group normalisation sees a whole picture's statistics at inference, not a crop's: without this
    the colours of whole pictures drift.
    """
    torch.manual_seed(plan.seed + 4)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-4, weight_decay=0.0)
    checkpoint = Checkpoint(plan.workdir / "finetune.pt", plan.checkpoint_seconds)
    step, rng = 0, random.Random(plan.seed + 5)
    if (state := checkpoint.load()) is not None:
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, rng = state["step"], state["rng"]
    vae.train()
    bar = progress(plan.whole_steps, step, "vae, whole pictures")
    while step < plan.whole_steps:
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, plan.whole_steps, 2e-4, warmup=20)
        x = to_tensor([render(sample_picture(rng, held_out=True)) for _ in range(plan.whole_batch)])
        loss = vae_step(vae, optimizer, x.to(plan.device))
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        state = {"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "rng": rng}
        checkpoint.save(state, force=step == plan.whole_steps)
    bar.close()
    return vae.eval()


def picture_batches(pictures: list[Picture], batch: int) -> Iterator[list[Picture]]:
    for start in range(0, len(pictures), batch):
        yield pictures[start : start + batch]


@torch.no_grad()
def encode_pictures(plan: Plan, vae: Any) -> tuple[list[Picture], torch.Tensor, float]:
    """Draw the training pictures once and keep their latents (mean of the posterior)."""
    path = plan.workdir / "latents.pt"
    if path.exists():
        state = torch.load(path, weights_only=False)
        return state["pictures"], state["latents"], state["scale"]
    rng = random.Random(plan.seed + 1)
    pictures = [sample_picture(rng) for _ in range(plan.pictures)]
    chunks = []
    bar = progress(len(pictures), 0, "latents")
    for batch in picture_batches(pictures, 64):
        x = to_tensor([render(picture) for picture in batch]).to(plan.device)
        chunks.append(vae.encode(x).latent_dist.mean.to("cpu", torch.float16))
        bar.update(len(batch))
    bar.close()
    latents = torch.cat(chunks)
    scale = float(1.0 / latents.float().std())
    torch.save({"pictures": pictures, "latents": latents, "scale": scale}, path)
    return pictures, latents, scale


def tokenizer_for(workdir: Path) -> Any:
    from demo_model.captions import vocabulary
    from gpu_worker.tiny_model import build_tokenizer

    folder = workdir / "tokenizer"
    folder.mkdir(parents=True, exist_ok=True)
    return build_tokenizer(folder, tuple(vocabulary()), architecture.MAX_TOKENS)


class Ema:
    """Exponential moving average of a module's weights (what gets shipped)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.shadow = {name: value.detach().clone() for name, value in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        decay = min(0.999, (1 + step) / (10 + step))
        state = module.state_dict()
        floats = [name for name, value in state.items() if value.dtype.is_floating_point]
        # One fused update over all tensors: a loop of small ones dominated a GPU step's time.
        torch._foreach_lerp_(
            [self.shadow[name] for name in floats], [state[name] for name in floats], 1 - decay
        )
        for name, value in state.items():
            if not value.dtype.is_floating_point:
                self.shadow[name].copy_(value)


def denoiser_step(
    models: tuple[Any, Any],
    optimizer: torch.optim.Optimizer,
    x0: torch.Tensor,
    tokens: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    floor: float,
) -> torch.Tensor:
    """One optimizer step of (UNet, text encoder) on latents `x0` and their captions; returns the loss.

    v-prediction with min-SNR weights (on the x0 scale min(SNR, 5)) plus `floor`: with zero terminal
    SNR a floor of 1 keeps the weight never below plain v-loss where the layout and background are
    decided (min-SNR alone weighs those ~0); objects form at middle SNR."""
    unet, text_encoder = models
    noise = torch.randn_like(x0)
    t = torch.randint(0, 1000, (len(x0),), device=x0.device)
    ab = alphas_cumprod[t].view(-1, 1, 1, 1)
    noisy = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    target = ab.sqrt() * noise - (1 - ab).sqrt() * x0
    prediction = unet(noisy, t, text_encoder(tokens)[0]).sample
    snr = ab.view(-1) / (1 - ab.view(-1))
    weight = (torch.clamp(snr, max=5.0) + floor) / (snr + 1)
    loss = (weight * F.mse_loss(prediction, target, reduction="none").mean(dim=(1, 2, 3))).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([*unet.parameters(), *text_encoder.parameters()], 1.0)
    optimizer.step()
    return loss


def train_denoiser(
    plan: Plan, pictures: list[Picture], latents: torch.Tensor, scale: float
) -> tuple[Any, Any, Any]:
    """Text encoder and UNet together, v-prediction, 10 % empty captions."""
    from demo_model.captions import caption

    tokenizer = tokenizer_for(plan.workdir)
    torch.manual_seed(plan.seed + 2)
    text_encoder: Any = architecture.build_text_encoder(
        len(tokenizer), bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id
    )
    text_encoder = text_encoder.to(plan.device)
    unet: Any = architecture.build_unet()
    unet = unet.to(plan.device)
    parameters = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=plan.lr, weight_decay=0.01)
    ema_unet, ema_text = Ema(unet), Ema(text_encoder)
    checkpoint = Checkpoint(plan.workdir / "denoiser.pt", plan.checkpoint_seconds)
    step, rng = 0, random.Random(plan.seed + 3)
    if (state := checkpoint.load()) is not None:
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text"])
        optimizer.load_state_dict(state["optimizer"])
        ema_unet.shadow, ema_text.shadow = state["ema_unet"], state["ema_text"]
        step, rng = state["step"], state["rng"]
    # The very schedule the exported sampler uses (see architecture.build_scheduler).
    scheduler: Any = architecture.build_scheduler(zero_snr=plan.zero_snr)
    alphas_cumprod = scheduler.alphas_cumprod.float().to(plan.device)
    total = plan.unet_steps + plan.detail_steps
    bar = progress(total, step, "unet")
    while step < total:
        detail = step >= plan.unet_steps
        for group in optimizer.param_groups:
            group["lr"] = (
                cosine_lr(step - plan.unet_steps, plan.detail_steps, plan.lr * 0.3, warmup=50)
                if detail
                else cosine_lr(step, plan.unet_steps, plan.lr, warmup=200)
            )
        index = [rng.randrange(len(pictures)) for _ in range(plan.unet_batch)]
        texts = ["" if rng.random() < 0.1 else caption(pictures[i], rng) for i in index]
        tokens = tokenizer(
            texts,
            padding="max_length",
            max_length=architecture.MAX_TOKENS,
            truncation=True,
            return_tensors="pt",
        )
        x0 = latents[index].float().to(plan.device) * scale
        # With zero terminal SNR, the v-loss floor outside the detail phase (see denoiser_step).
        floor = plan.snr_floor if plan.zero_snr and not detail else 0.0
        loss = denoiser_step(
            (unet, text_encoder), optimizer, x0, tokens.input_ids.to(plan.device), alphas_cumprod, floor
        )
        ema_unet.update(unet, step)
        ema_text.update(text_encoder, step)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        state = {
            "unet": unet.state_dict(),
            "text": text_encoder.state_dict(),
            "optimizer": optimizer.state_dict(),
            "ema_unet": ema_unet.shadow,
            "ema_text": ema_text.shadow,
            "step": step,
            "rng": rng,
        }
        checkpoint.save(state, force=step == total)
    bar.close()
    unet.load_state_dict(ema_unet.shadow)
    text_encoder.load_state_dict(ema_text.shadow)
    return tokenizer, text_encoder.eval(), unet.eval()


def export(
    plan: Plan, output: Path, vae: Any, scale: float, tokenizer: Any, text_encoder: Any, unet: Any
) -> None:
    """Write the diffusers directory (half-precision safetensors: the repository carries it)."""
    from diffusers import StableDiffusionPipeline

    vae.register_to_config(scaling_factor=scale)
    pipe: Any = StableDiffusionPipeline(
        vae=vae.to("cpu"),
        text_encoder=text_encoder.to("cpu"),
        tokenizer=tokenizer,
        unet=unet.to("cpu"),
        scheduler=architecture.build_scheduler(zero_snr=plan.zero_snr),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.float16)
    pipe.save_pretrained(output, safe_serialization=True)


def load_vae(folder: Path) -> Any:
    """A VAE from an earlier run's diffusers folder (full precision again)."""
    from diffusers import AutoencoderKL

    vae: Any = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32)
    return vae.eval()


def train(plan: Plan, output: Path, *, vae_from: Path | None = None) -> None:
    plan.workdir.mkdir(parents=True, exist_ok=True)
    vae = load_vae(vae_from) if vae_from is not None else finetune_vae(plan, train_vae(plan))
    vae = vae.to(plan.device)
    pictures, latents, scale = encode_pictures(plan, vae)
    tokenizer, text_encoder, unet = train_denoiser(plan, pictures, latents, scale)
    export(plan, output, vae, scale, tokenizer, text_encoder, unet)

"""Training the built-in model on a GPU in minutes instead of hours on two CPU cores.

The CPU recipe (training.py) draws each batch's pictures inside the training loop, which would leave a
GPU idle. Here a pool of processes draws the pictures and tokenizes several captions of each once; the
pictures and token ids then live on the device and every batch is indexed there. Each phase runs for a
time budget, its learning rate following the elapsed share of it, and records how many steps it took
(`--unet-steps` of the CPU recipe reproduces a step count, not a GPU run's exact weights).

    python -m demo_model.gpu_training prepare --workdir W --pictures 60000 --vae-seconds 100
    python -m demo_model.gpu_training denoiser --workdir W --name wide --channels 48,96,192 ...

`prepare` draws the pictures, trains a VAE on whole pictures, keeps whichever VAE (the new one or the
shipped one) reconstructs the judge's evaluation pictures better, and writes the latents;
`denoiser` trains a text encoder and UNet on them and exports a diffusers folder, scored by the judge.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from demo_model import architecture
from demo_model.training import Ema, Plan, denoiser_step, export, load_vae, vae_step

CHUNK = 500
_tokenizer: Any = None


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def draw_chunk(job: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """`count` pictures from `seed`: RGB pixels and the token ids of `captions` captions of each."""
    from demo_model.captions import caption, vocabulary
    from demo_model.draw import render
    from demo_model.world import sample_picture
    from gpu_worker.tiny_model import build_tokenizer

    global _tokenizer
    seed, count, captions = job
    if _tokenizer is None:
        _tokenizer = build_tokenizer(Path(tempfile.mkdtemp()), tuple(vocabulary()), architecture.MAX_TOKENS)
    rng = random.Random(seed)
    pixels = np.empty((count, architecture.SIDE, architecture.SIDE, 3), dtype=np.uint8)
    texts = []
    for index in range(count):
        picture = sample_picture(rng)
        pixels[index] = np.asarray(render(picture), dtype=np.uint8)
        texts += [caption(picture, rng) for _ in range(captions)]
    ids = _tokenizer(
        texts, padding="max_length", max_length=architecture.MAX_TOKENS, truncation=True, return_tensors="np"
    ).input_ids
    return pixels, np.asarray(ids, dtype=np.int32).reshape(count, captions, architecture.MAX_TOKENS)


def draw_pool(count: int, seed: int, captions: int, processes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels (N, 256, 256, 3) uint8 and token ids (N, captions, 48), drawn by `processes` (forked)."""
    pixels = torch.empty((count, architecture.SIDE, architecture.SIDE, 3), dtype=torch.uint8)
    ids = torch.empty((count, captions, architecture.MAX_TOKENS), dtype=torch.int32)
    jobs = [
        (seed * 1_000_003 + start, min(CHUNK, count - start), captions) for start in range(0, count, CHUNK)
    ]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        for number, (chunk_pixels, chunk_ids) in enumerate(pool.imap(draw_chunk, jobs)):
            start = number * CHUNK
            pixels[start : start + len(chunk_pixels)] = torch.from_numpy(chunk_pixels)
            ids[start : start + len(chunk_ids)] = torch.from_numpy(chunk_ids)
    return pixels, ids


def as_input(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.permute(0, 3, 1, 2).float() / 127.5 - 1.0


class Budget:
    """A phase's clock: the learning rate follows the elapsed share of `seconds` (warm-up, then cosine)."""

    def __init__(self, seconds: float, peak: float, warmup: int) -> None:
        self.seconds, self.peak, self.warmup = seconds, peak, warmup
        self.started = time.monotonic()
        self.step = 0

    def running(self) -> bool:
        return time.monotonic() - self.started < self.seconds

    def lr(self) -> float:
        if self.step < self.warmup:
            return self.peak * (self.step + 1) / self.warmup
        share = min(1.0, (time.monotonic() - self.started) / self.seconds)
        return 1e-5 + (self.peak - 1e-5) * 0.5 * (1 + math.cos(math.pi * share))

    def tick(self, optimizer: torch.optim.Optimizer) -> None:
        for group in optimizer.param_groups:
            group["lr"] = self.lr()
        self.step += 1


def train_vae(pixels: torch.Tensor, seconds: float, *, batch: int, seed: int) -> Any:
    torch.manual_seed(seed)
    vae: Any = architecture.build_vae()
    with torch.no_grad():
        vae.encoder.conv_out.bias[architecture.LATENT_CHANNELS :].fill_(-8.0)
    vae = vae.to(pixels.device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    budget = Budget(seconds, 1e-3, warmup=50)
    while budget.running():
        budget.tick(optimizer)
        loss = vae_step(
            vae, optimizer, as_input(pixels[torch.randint(len(pixels), (batch,), device=pixels.device)])
        )
        if budget.step % 500 == 0:
            log(f"vae step {budget.step} loss {loss.item():.4f}")
    log(f"vae: {budget.step} steps of {batch} whole pictures in {seconds:.0f} s")
    return vae.eval()


@torch.no_grad()
def vae_ceiling(vae: Any, cases: int) -> dict[str, float]:
    """The judge on the VAE's reconstructions of the evaluation pictures: what a perfect UNet could reach."""
    from PIL import Image

    from demo_model.draw import render
    from demo_model.evaluation import evaluation_set, score

    fixed = evaluation_set(cases)
    pictures = {(case.prompt, case.seed): case.picture for case in fixed}
    device = next(vae.parameters()).device

    def reconstruct(prompt: str, seed: int) -> Image.Image:
        image = np.array(render(pictures[(prompt, seed)]), dtype=np.uint8)
        x = as_input(torch.from_numpy(image)[None].to(device))
        y = vae.decode(vae.encode(x).latent_dist.mean).sample[0]
        array = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(array)

    return score(reconstruct, fixed)


def objects(scores: dict[str, float]) -> float:
    return sum(scores.get(name, 0.0) for name in ("background", "colour", "position", "count", "shape"))


@torch.no_grad()
def encode(vae: Any, pixels: torch.Tensor) -> tuple[torch.Tensor, float]:
    chunks = [
        vae.encode(as_input(pixels[i : i + 256])).latent_dist.mean.half() for i in range(0, len(pixels), 256)
    ]
    latents = torch.cat(chunks)
    return latents, float(1.0 / latents.float().std())


def prepare(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    pixels, ids = draw_pool(args.pictures, args.seed, args.captions, args.processes)
    seconds = time.monotonic() - started
    log(f"drew {len(pixels)} pictures with {args.captions} captions each in {seconds:.0f} s")
    pixels = pixels.to(args.device)
    candidates = {"shipped": load_vae(Path(args.shipped_vae)).to(args.device)}
    if args.vae_seconds > 0:
        candidates["new"] = train_vae(pixels, args.vae_seconds, batch=args.vae_batch, seed=args.seed)
    ceilings = {name: vae_ceiling(vae, args.ceiling_cases) for name, vae in candidates.items()}
    chosen = max(ceilings, key=lambda name: objects(ceilings[name]))
    log(f"VAE ceilings {json.dumps(ceilings)}; using the {chosen} VAE")
    vae = candidates[chosen]
    vae.save_pretrained(workdir / "vae", safe_serialization=True)
    latents, scale = encode(vae, pixels)
    torch.save(
        {"latents": latents.cpu(), "ids": ids, "scale": scale, "vae": chosen, "ceilings": ceilings},
        workdir / "latents.pt",
    )
    log(f"latents {tuple(latents.shape)} scale {scale:.4f}; prepare took {time.monotonic() - started:.0f} s")


def train_denoiser(args: argparse.Namespace, data: dict[str, Any], tokenizer: Any) -> tuple[Any, Any, int]:
    device = args.device
    latents = data["latents"].to(device)
    ids = data["ids"].to(device).long()
    empty = tokenizer([""], padding="max_length", max_length=architecture.MAX_TOKENS, return_tensors="pt")
    empty_ids = empty.input_ids.to(device)
    torch.manual_seed(args.seed + 2)
    first, second, third = (int(part) for part in args.channels.split(","))
    channels = (first, second, third)
    text_encoder: Any = architecture.build_text_encoder(
        len(tokenizer),
        bos=tokenizer.bos_token_id,
        eos=tokenizer.eos_token_id,
        pad=tokenizer.pad_token_id,
        dim=args.text_dim,
        layers=args.text_layers,
    ).to(device)
    unet: Any = architecture.build_unet(channels, args.text_dim)
    unet = unet.to(device)
    parameters = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.01)
    ema_unet, ema_text = Ema(unet), Ema(text_encoder)
    scheduler: Any = architecture.build_scheduler(zero_snr=args.zero_snr)
    alphas_cumprod = scheduler.alphas_cumprod.float().to(device)
    budget = Budget(args.seconds, args.lr, warmup=200)
    batch, scale = args.batch, data["scale"]
    while budget.running():
        budget.tick(optimizer)
        index = torch.randint(len(latents), (batch,), device=device)
        choice = torch.randint(ids.shape[1], (batch,), device=device)
        tokens = ids[index, choice]
        dropped = torch.rand(batch, device=device) < 0.1
        tokens = torch.where(dropped[:, None], empty_ids, tokens)
        x0 = latents[index].float() * scale
        floor = args.snr_floor if args.zero_snr else 0.0
        loss = denoiser_step((unet, text_encoder), optimizer, x0, tokens, alphas_cumprod, floor)
        ema_unet.update(unet, budget.step)
        ema_text.update(text_encoder, budget.step)
        if budget.step % 1000 == 0:
            log(f"{args.name} step {budget.step} loss {loss.item():.4f}")
    unet.load_state_dict(ema_unet.shadow)
    text_encoder.load_state_dict(ema_text.shadow)
    return text_encoder.eval(), unet.eval(), budget.step


def denoiser(args: argparse.Namespace) -> None:
    from demo_model.evaluation import evaluation_set, pipeline_generator, score
    from demo_model.training import tokenizer_for

    workdir = Path(args.workdir)
    data = torch.load(workdir / "latents.pt", weights_only=False)
    tokenizer = tokenizer_for(workdir / f"tokenizer-{args.name}")
    text_encoder, unet, steps = train_denoiser(args, data, tokenizer)
    log(f"{args.name}: {steps} steps of {args.batch} in {args.seconds:.0f} s")
    output = workdir / "out" / args.name
    plan = Plan(workdir=workdir, zero_snr=args.zero_snr)
    export(plan, output, load_vae(workdir), data["scale"], tokenizer, text_encoder, unet)
    recipe = {key: value for key, value in vars(args).items() if key not in {"command", "workdir", "device"}}
    (output / "recipe.json").write_text(json.dumps({**recipe, "steps": steps, "vae": data["vae"]}, indent=2))
    log(f"{args.name}: exported to {output}")
    scores = score(pipeline_generator(output, device=args.device), evaluation_set(args.eval_cases))
    (output / "scores.json").write_text(json.dumps(scores, indent=2))
    log(f"{args.name} scores {json.dumps(scores)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    first = commands.add_parser("prepare")
    first.add_argument("--pictures", type=int, default=60000)
    first.add_argument("--captions", type=int, default=6, help="captions tokenized per picture")
    first.add_argument("--processes", type=int, default=multiprocessing.cpu_count())
    first.add_argument("--vae-seconds", type=float, default=100, help="0: keep the shipped VAE")
    first.add_argument("--vae-batch", type=int, default=32)
    first.add_argument("--shipped-vae", default=str(Path(__file__).parent / "weights"))
    first.add_argument("--ceiling-cases", type=int, default=100)
    second = commands.add_parser("denoiser")
    second.add_argument("--name", required=True)
    second.add_argument("--channels", default="32,64,128")
    second.add_argument("--text-dim", type=int, default=architecture.TEXT_DIM)
    second.add_argument("--text-layers", type=int, default=2)
    second.add_argument("--zero-snr", action="store_true")
    second.add_argument("--snr-floor", type=float, default=1.0)
    second.add_argument("--seconds", type=float, default=240)
    second.add_argument("--batch", type=int, default=256)
    second.add_argument("--lr", type=float, default=1e-3)
    second.add_argument("--eval-cases", type=int, default=100)
    for sub in (first, second):
        sub.add_argument("--workdir", required=True)
        sub.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        sub.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    commands_by_name: dict[str, Callable[[argparse.Namespace], None]] = {
        "prepare": prepare,
        "denoiser": denoiser,
    }
    commands_by_name[args.command](args)


if __name__ == "__main__":
    main()

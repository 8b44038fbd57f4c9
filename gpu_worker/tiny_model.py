"""A tiny, randomly initialised Stable Diffusion 1.x model built entirely offline.

It is laid out exactly like a real SD 1.5 diffusers directory, so the worker loads it through
the same `StableDiffusionPipeline.from_pretrained` code path; it only exists so the whole
system can run and be tested on a CPU without downloading weights.
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import shutil
import tempfile
import threading
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
MAX_TOKENS = 77
TEXT_DIM = 32

# Module init draws from torch's global RNG, which threads share; serialise seeded construction.
_SEEDED_BUILD = threading.Lock()

# A few whole words get their own BPE tokens so common prompts don't tokenize to single characters.
MERGE_WORDS = ("the", "and", "of", "photo", "portrait", "cat", "dog", "city", "night", "forest")


def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2/CLIP reversible byte -> printable unicode character table."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def word_symbols(word: str) -> list[str]:
    return [*word[:-1], word[-1] + "</w>"]


def apply_merges(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one word: merge the best-ranked adjacent pair until none is known."""
    symbols = word_symbols(word)
    while len(symbols) > 1:
        pairs = {(a, b) for a, b in itertools.pairwise(symbols) if (a, b) in ranks}
        if not pairs:
            break
        first, second = min(pairs, key=ranks.__getitem__)
        merged: list[str] = []
        index = 0
        while index < len(symbols):
            if index + 1 < len(symbols) and (symbols[index], symbols[index + 1]) == (first, second):
                merged.append(first + second)
                index += 2
            else:
                merged.append(symbols[index])
                index += 1
        symbols = merged
    return symbols


def build_vocab(merge_words: tuple[str, ...] = MERGE_WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary laid out like CLIP's: bytes, bytes + "</w>", merged tokens, then specials.

    Each word ends as one token: what the earlier merges leave of it is joined left to right by new
    merges ranked after all earlier ones, so they never break a word that is already one token.
    """
    base = list(bytes_to_unicode().values())
    tokens = base + [char + "</w>" for char in base]
    ranks: dict[tuple[str, str], int] = {}
    for word in merge_words:
        symbols = apply_merges(word, ranks)
        while len(symbols) > 1:
            ranks[(symbols[0], symbols[1])] = len(ranks)
            tokens.append(symbols[0] + symbols[1])
            symbols = [symbols[0] + symbols[1], *symbols[2:]]
    if broken := [word for word in merge_words if len(apply_merges(word, ranks)) != 1]:
        raise ValueError(f"words that are not one token: {broken}")
    tokens += [START_OF_TEXT, END_OF_TEXT]
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}, list(ranks)


def build_tokenizer(
    workdir: pathlib.Path, merge_words: tuple[str, ...] = MERGE_WORDS, max_tokens: int = MAX_TOKENS
) -> CLIPTokenizer:
    """A CLIP BPE tokenizer in which each of `merge_words` is a single token."""
    vocab, merges = build_vocab(merge_words)
    vocab_file = workdir / "vocab.json"
    merges_file = workdir / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    # CLIPTokenizer skips the first line of merges.txt (the version header).
    merges_file.write_text(
        "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8"
    )
    return CLIPTokenizer(
        str(vocab_file),
        str(merges_file),
        bos_token=START_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        model_max_length=max_tokens,
    )


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=TEXT_DIM,
        hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def build_unet() -> UNet2DConditionModel:
    # Attention only at the 16x16 level: self-attention over 32x32 or 64x64 tokens dominates CPU time.
    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=4,
        norm_num_groups=8,
    )


def small_vae(latent_channels: int = 4, **config: Any) -> Any:
    """The small VAE of every built-in family; `config` adds the family's scaling and quirks."""
    # Four blocks give SD's 8x latent downsampling; the full-resolution decoder block is what costs
    # time at 512x512, so the first (= last decoded) block is kept very narrow.
    vae: Any = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=512,
        **config,
    )
    # Default init decodes to nearly flat grey; a stronger output layer gives visibly varied images.
    with torch.no_grad():
        vae.decoder.conv_out.weight.mul_(4.0)
    return vae


def build_vae() -> Any:
    return small_vae(scaling_factor=0.18215)


def build_scheduler() -> DPMSolverMultistepScheduler:
    # DPM++ 2M Karras with the SD 1.x training noise schedule: a good default at 20 steps.
    return DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        algorithm_type="dpmsolver++",
        solver_order=2,
        use_karras_sigmas=True,
        timestep_spacing="leading",
        steps_offset=1,
    )


def build_tiny_model(path: pathlib.Path, *, seed: int = 0) -> None:
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        tokenizer = build_tokenizer(pathlib.Path(workdir))
    # fork_rng keeps the caller's global RNG state untouched by our seeding.
    with _SEEDED_BUILD, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = build_text_encoder(tokenizer)
        unet = build_unet()
        vae = build_vae()
    pipe: Any = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)


def is_model_dir(path: pathlib.Path) -> bool:
    return (pathlib.Path(path) / "model_index.json").is_file()


def ensure_tiny_model(path: pathlib.Path, *, seed: int = 0) -> bool:
    """Build the model at `path` unless present; returns True if this call built it.

    Builds next to the target and renames into place, so concurrent callers never see (or
    produce) a half-written directory: the first rename wins, later builds are discarded.
    """
    path = pathlib.Path(path)
    if is_model_dir(path):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.build-", dir=path.parent))
    try:
        build_tiny_model(staging, seed=seed)
        try:
            # Replaces `path` only if it is absent or an empty directory; otherwise raises.
            os.rename(staging, path)
        except OSError:
            if is_model_dir(path):
                return False
            raise
        return True
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)

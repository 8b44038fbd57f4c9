"""LoRA settings beyond the folder itself (generations/loras.py); config/settings.py takes every
name from here."""

from __future__ import annotations

from pathlib import Path

from core.env import env_str

# LoRAs shipped with the repository (the built-in model's own, trained by
# `manage.py train_demo_lora`): listed beside ATELIER_LORA_DIR's, which wins on a name clash.
# Empty turns them off.
ATELIER_BUILTIN_LORA_DIR = env_str(
    "ATELIER_BUILTIN_LORA_DIR", str(Path(__file__).resolve().parent.parent / "demo_model" / "loras")
)

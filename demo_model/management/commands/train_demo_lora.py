"""`manage.py train_demo_lora`: train the built-in model's monochrome LoRA and write it with a manifest."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from demo_model import manifest

NAME = "atelier-demo-monochrome"


class Command(BaseCommand):
    help = "Train the built-in model's monochrome LoRA on the picture world (seeded, resumable; see README)."

    def add_arguments(self, parser: CommandParser) -> None:
        default = Path(settings.ATELIER_BUILTIN_LORA_DIR or manifest.WEIGHTS.parent / "loras")
        parser.add_argument("--output", type=Path, default=default / f"{NAME}.safetensors")
        parser.add_argument("--workdir", type=Path, default=Path(settings.DATA_DIR) / "demo-lora")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--steps", type=int, default=350)
        parser.add_argument("--pictures", type=int, default=384)
        parser.add_argument("--rank", type=int, default=8)
        parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: best when busy)")

    def handle(self, *args: Any, **options: Any) -> None:
        import torch
        from safetensors.torch import save_file

        from demo_model.lora_training import LoraPlan, train_lora
        from demo_model.world import WORLD_VERSION

        torch.set_num_threads(options["threads"])
        plan = LoraPlan(
            workdir=options["workdir"],
            seed=options["seed"],
            steps=options["steps"],
            pictures=options["pictures"],
            rank=options["rank"],
            log=self.stdout.write,
        )
        self.stdout.write(f"Training in {plan.workdir} (resumes from its checkpoint), to {options['output']}")
        tensors, recipe = train_lora(plan)
        output: Path = options["output"]
        output.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(output), metadata={"style": "monochrome", "base_model": "atelier-demo"})
        record = {
            "file": output.name,
            "sha256": manifest.sha256(output),
            "bytes": output.stat().st_size,
            "base_model_manifest_sha256": manifest.sha256(manifest.MANIFEST),
            "command": " ".join(["python manage.py train_demo_lora", *map(shlex.quote, sys.argv[2:])]),
            "device": "cpu",
            "threads": options["threads"],
            "torch": torch.__version__,
            "world_version": WORLD_VERSION,
            "recipe": recipe,
        }
        output.with_suffix(".json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        self.stdout.write(self.style.SUCCESS(f"Wrote {output} and {output.with_suffix('.json').name}"))

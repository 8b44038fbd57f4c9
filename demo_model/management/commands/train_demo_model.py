"""`manage.py train_demo_model`: train the built-in model from scratch and write it with a manifest."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from demo_model import manifest
from demo_model.world import WORLD_VERSION


class Command(BaseCommand):
    help = "Train the built-in text-to-image model on the picture world (resumable; see README)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", type=Path, default=manifest.WEIGHTS)
        parser.add_argument("--workdir", type=Path, default=Path(settings.DATA_DIR) / "demo-train")
        parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads")
        parser.add_argument("--vae-steps", type=int, default=2500)
        parser.add_argument("--whole-steps", type=int, default=150)
        parser.add_argument("--pictures", type=int, default=4000)
        parser.add_argument("--unet-steps", type=int, default=3500)
        parser.add_argument("--unet-batch", type=int, default=24)
        parser.add_argument("--detail-steps", type=int, default=0, help="more UNet steps weighted for detail")
        parser.add_argument(
            "--zero-snr", action="store_true", help="zero terminal SNR schedule (run 3, docs/benchmarks.md)"
        )
        parser.add_argument("--snr-floor", type=float, default=1.0, help="with --zero-snr: v-loss floor")
        parser.add_argument(
            "--vae-from",
            type=Path,
            help="reuse the VAE of an earlier run's weights folder (skips the VAE phases; it is copied)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        import torch

        from demo_model.training import Plan, train

        torch.set_num_threads(options["threads"])
        plan = Plan(
            workdir=options["workdir"],
            device=options["device"],
            seed=options["seed"],
            vae_steps=options["vae_steps"],
            whole_steps=options["whole_steps"],
            pictures=options["pictures"],
            unet_steps=options["unet_steps"],
            unet_batch=options["unet_batch"],
            detail_steps=options["detail_steps"],
            zero_snr=options["zero_snr"],
            snr_floor=options["snr_floor"],
            log=self.stdout.write,
        )
        started = time.monotonic()
        self.stdout.write(
            f"Training in {plan.workdir} (resumes from its checkpoints), writing {options['output']}"
        )
        train(plan, options["output"], vae_from=options["vae_from"])
        manifest.write(
            options["output"],
            command=" ".join(["python manage.py train_demo_model", *map(shlex.quote, sys.argv[2:])]),
            world_version=WORLD_VERSION,
            seed=plan.seed,
            device=plan.device,
            torch=torch.__version__,
            last_run_minutes=round((time.monotonic() - started) / 60, 1),
        )
        self.stdout.write(self.style.SUCCESS(f"Wrote {options['output']} and its manifest"))

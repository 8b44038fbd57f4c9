"""`manage.py models add|list|remove`: the models operators add beside ATELIER_MODELS.

    python manage.py models add dreamy /srv/dreamy-xl --family sdxl --pool sdxl
    python manage.py models add dreamy org/dreamy-xl@main --family sdxl --pool sdxl
    python manage.py models add dreamy https://host/dreamy.safetensors --sha256 HEX \\
        --config /data/models/sdxl-base --family sdxl --pool sdxl
    python manage.py models list
    python manage.py models remove dreamy
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.model_catalog import FAMILIES
from generations.model_download import DownloadError
from generations.model_hub import HubError
from generations.model_install import ModelInstallError, install_model, remove_model
from generations.registry import in_models_dir, models_dir
from generations.selectors import model_rows

OPTION_FLAGS = {
    "default_side": int,
    "max_side": int,
    "default_steps": int,
    "max_steps": int,
    "default_guidance": float,
    "cost_multiplier": float,
    "max_batch": int,
}


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GiB"


class Command(BaseCommand):
    help = "Add, list and remove the models operators install (beside ATELIER_MODELS)."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="action", required=True)
        add = commands.add_parser("add", help="copy or download a model into the models folder")
        add.add_argument("name")
        add.add_argument(
            "source",
            help="a diffusers directory, a checkpoint file, an https URL, or a hub id org/name[@revision]",
        )
        add.add_argument("--family", required=True, choices=FAMILIES)
        add.add_argument("--pool", required=True, help="the workers that run it (gpu_worker --pools)")
        add.add_argument("--sha256", default="", help="for a URL: the checksum the download must match")
        add.add_argument("--config", default="", help="for a single file: its family's diffusers directory")
        for flag, kind in OPTION_FLAGS.items():
            add.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=kind, default=None)
        commands.add_parser("list", help="every model, its pool, family, size and the workers holding it")
        remove = commands.add_parser("remove", help="forget an added model and delete its files")
        remove.add_argument("name")
        remove.add_argument("--keep-files", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"handle_{options['action']}")(options)
        except (ModelInstallError, DownloadError, HubError) as error:
            raise CommandError(str(error)) from error

    def handle_add(self, options: dict[str, Any]) -> None:
        chosen = {flag: options[flag] for flag in OPTION_FLAGS if options.get(flag) is not None}
        row = install_model(
            name=options["name"],
            source=options["source"],
            family=options["family"],
            pool=options["pool"],
            config=options["config"],
            sha256=options["sha256"],
            options=chosen,
        )
        self.stdout.write(
            f"added {row.name} ({row.family}, pool {row.pool}, {human_size(row.size_bytes)}) at "
            f"{in_models_dir(row.path)}"
        )
        self.stdout.write(f"workers serve it with: python manage.py gpu_worker --pools {row.pool}")

    def handle_list(self, options: dict[str, Any]) -> None:
        self.stdout.write(f"models folder: {models_dir()}")
        for row in model_rows():
            held = ", ".join(row.held_by) or "no worker"
            self.stdout.write(
                f"{row.name}\tpool {row.pool}\t{row.family}\t{human_size(row.size_bytes)}\t{row.origin}\t"
                f"{held}"
            )

    def handle_remove(self, options: dict[str, Any]) -> None:
        row = remove_model(name=options["name"], keep_files=options["keep_files"])
        self.stdout.write(f"removed {row.name}" + (" (files kept)" if options["keep_files"] else ""))

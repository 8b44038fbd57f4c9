from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ops.backup import restore


class Command(BaseCommand):
    help = "Restore the database and media from an archive written by `backup` (replaces the database)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            manifest = restore(options["archive"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"restored the {manifest['engine']} database and {manifest['media']} media files")

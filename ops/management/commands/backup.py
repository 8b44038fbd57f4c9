from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ops.backup import backup


class Command(BaseCommand):
    help = "Write the database and all media to one .tar.gz archive (see ops/backup.py)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        manifest = backup(options["archive"])
        self.stdout.write(f"backed up the {manifest['engine']} database and {manifest['media']} media files")

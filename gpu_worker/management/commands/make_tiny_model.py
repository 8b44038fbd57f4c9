from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from core.model_catalog import builtin_model
from gpu_worker.tiny_model import ensure_tiny_model


class Command(BaseCommand):
    help = "Build the built-in small model (random weights, no download) if it is missing."

    def handle(self, *args: Any, **options: Any) -> None:
        spec = builtin_model(settings.DATA_DIR)
        built = ensure_tiny_model(Path(spec.path))
        self.stdout.write(f"{'Built' if built else 'Already present:'} {spec.path}")

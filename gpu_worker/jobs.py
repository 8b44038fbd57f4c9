"""The RQ job function. The runner lives as long as the worker process, with its loaded models."""

from __future__ import annotations

from gpu_worker.connections import replace_broken_connections
from gpu_worker.runner import GenerationRunner

_runner: GenerationRunner | None = None


def install_runner(runner: GenerationRunner) -> None:
    global _runner
    _runner = runner


def current_runner() -> GenerationRunner:
    global _runner
    if _runner is None:
        _runner = GenerationRunner()
    return _runner


def run_generation(generation_id: str) -> str:
    # Like Django's request cycle, a connection broken or expired between jobs is replaced (but kept
    # otherwise: gpu_worker/connections.py).
    replace_broken_connections()
    try:
        return current_runner().run_one(generation_id)
    finally:
        replace_broken_connections()

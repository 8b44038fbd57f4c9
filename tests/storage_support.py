"""What the storage tests share: members with API keys, images the real worker code renders, copies
that share an image's files (as result-cache answers do), and the dispatcher run as a process."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.test import Client
from django.utils import timezone

from accounts.models import User
from accounts.services import api_key_create
from billing.credits import account_for
from generations import lifecycle
from generations.models import Image
from gpu_worker.runner import GenerationRunner
from tests.conftest import ROOT
from tests.factories import queued_generation


@dataclass
class Member:
    user: User
    client: Client


def member(name: str) -> Member:
    user = User.objects.create_user(name)
    account_for(user)
    _, key = api_key_create(user=user)
    return Member(user, Client(HTTP_AUTHORIZATION=f"Bearer {key}"))


def render(user: User, **fields: Any) -> Image:
    """One image made by the worker's own code (the built-in model), stored where media lives."""
    generation = queued_generation(user, **fields)
    assert run_job(str(generation.id)) == "succeeded"
    return Image.objects.get(generation=generation)


def run_job(generation_id: str) -> str:
    runner = GenerationRunner(name="storage-runner")
    try:
        return str(runner.run_one(generation_id))
    finally:
        runner.publisher.close()


def copy_of(image: Image, user: User) -> Image:
    """Another generation's image on the same files: a result-cache answer, made as the cache does."""
    generation = queued_generation(user, prompt=image.generation.prompt, seed=image.generation.seed)
    assert lifecycle.serve_from_cache(generation, [image])
    return Image.objects.get(generation=generation)


def days_ago(days: float) -> Any:
    return timezone.now() - timedelta(days=days)


def run_dispatcher_once(env: dict[str, str]) -> None:
    """`manage.py dispatcher --once`: one tick, then the storage sweep (its thread ends before the
    process does)."""
    done = subprocess.run(
        [sys.executable, "manage.py", "dispatcher", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "storage duty" not in done.stderr, done.stderr  # no duty failed

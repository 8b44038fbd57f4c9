"""Reads for the ComfyUI surface: history entries, the queue and output files, all from the
user's own workflow generations (the row is the truth; nothing is kept in memory)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from accounts.models import User
from generations.models import ACTIVE_STATUSES, Generation, GenerationKind, GenerationStatus

# Output files are named <prefix>_<generation id, 32 hex>_<index, 5 digits>_.png (worker side).
FILE_NAME = re.compile(r"_([0-9a-f]{32})_\d{5}_\.png$")


def workflows_of(user: User) -> QuerySet[Generation]:
    return Generation.objects.filter(user=user, kind=GenerationKind.WORKFLOW)


def in_history(user: User) -> QuerySet[Generation]:
    """Finished workflows, less those the user removed from the history (POST /history)."""
    finished = workflows_of(user).exclude(status__in=ACTIVE_STATUSES)
    # The key is absent until then (a NOT over a JSON key would also drop the rows without it).
    return finished.filter(workflow__history_deleted__isnull=True)


def queue_item(generation: Generation) -> list[Any]:
    """ComfyUI's 5-element queue item: number, prompt_id, prompt, extra_data, outputs."""
    workflow = generation.workflow
    return [
        workflow.get("number", 0),
        str(generation.id),
        workflow.get("prompt", {}),
        workflow.get("extra_data", {}),
        workflow.get("outputs_to_execute", []),
    ]


def status_of(generation: Generation) -> dict[str, Any]:
    workflow = generation.workflow
    ok = generation.status == GenerationStatus.SUCCEEDED
    messages: list[list[Any]] = []
    started = int(generation.started_at.timestamp() * 1000) if generation.started_at else None
    finished = int(generation.finished_at.timestamp() * 1000) if generation.finished_at else None
    pid = str(generation.id)
    if started is not None:
        messages.append(["execution_start", {"prompt_id": pid, "timestamp": started}])
        messages.append(
            [
                "execution_cached",
                {"nodes": workflow.get("cached", []), "prompt_id": pid, "timestamp": started},
            ]
        )
    if ok:
        messages.append(["execution_success", {"prompt_id": pid, "timestamp": finished}])
    elif generation.status == GenerationStatus.CANCELED:
        messages.append(
            ["execution_interrupted", {"prompt_id": pid, "timestamp": finished, **workflow.get("error", {})}]
        )
    else:
        error = {"exception_message": generation.error_message, "exception_type": generation.error_code}
        messages.append(
            [
                "execution_error",
                {"prompt_id": pid, "timestamp": finished, **error, **workflow.get("error", {})},
            ]
        )
    return {"status_str": "success" if ok else "error", "completed": ok, "messages": messages}


def history_entry(generation: Generation) -> dict[str, Any]:
    outputs = generation.workflow.get("outputs", {})
    return {
        "prompt": queue_item(generation),
        "outputs": outputs,
        "status": status_of(generation),
        "meta": {
            node: {"node_id": node, "display_node": node, "parent_node": None, "real_node_id": node}
            for node in outputs
        },
    }


def history_of(user: User, *, max_items: int | None = None, offset: int = 0) -> dict[str, Any]:
    """Finished workflows, oldest first as ComfyUI keeps them; ``max_items`` takes the newest."""
    done = in_history(user).order_by("-created_at")
    newest = list(done[offset : offset + max_items] if max_items is not None else done[offset:])
    return {str(g.id): history_entry(g) for g in reversed(newest)}


def history_item(user: User, prompt_id: str) -> dict[str, Any]:
    """``{id: entry}`` once finished; ``{}`` while waiting or running, and for anyone else's."""
    try:
        key = uuid.UUID(prompt_id)
    except ValueError:
        return {}
    generation = in_history(user).filter(pk=key).first()
    return {prompt_id: history_entry(generation)} if generation else {}


def run_order(generation: Generation) -> tuple[Any, ...]:
    """Where a waiting generation stands: in RQ before held back, by lane, then by its place in
    the lane (a prompt put in ``front`` holds its owner's first place: generations/ordering.py)."""
    lane = settings.LANES.index(generation.lane) if generation.lane in settings.LANES else len(settings.LANES)
    held = generation.status != GenerationStatus.QUEUED
    return (held, lane, generation.lane_entered_at, generation.created_at)


def queue_of(user: User) -> dict[str, list[Any]]:
    """The user's running prompts, and their waiting ones in the order they will run."""
    active = workflows_of(user).filter(status__in=ACTIVE_STATUSES).order_by("created_at")
    running = [queue_item(g) for g in active if g.status == GenerationStatus.RUNNING]
    waiting = sorted((g for g in active if g.status != GenerationStatus.RUNNING), key=run_order)
    return {"queue_running": running, "queue_pending": [queue_item(g) for g in waiting]}


def queue_remaining(user: User) -> int:
    return workflows_of(user).filter(status__in=ACTIVE_STATUSES).count()


def output_file(user: User, *, filename: str, subfolder: str, kind: str) -> str | None:
    """The stored path of one of the user's workflow files, or None."""
    match = FILE_NAME.search(filename)
    if match is None:
        return None
    generation = workflows_of(user).filter(pk=uuid.UUID(match.group(1))).first()
    if generation is None:
        return None
    record = generation.workflow.get("files", {}).get(f"{subfolder}/{filename}" if subfolder else filename)
    if not record or record.get("type") != kind:
        return None
    if kind == "output" and not generation.images.filter(original=record["path"]).exists():
        return None  # its image was deleted (Image.objects hides deleted ones)
    return str(record["path"])

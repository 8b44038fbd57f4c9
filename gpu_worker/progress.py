"""The per-step callback of a batch: the users' cancel flags and the dispatcher's preempt flags,
progress in the row, progress events."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from core.sql import hint_transaction
from generations import queues
from generations.models import Generation, GenerationStatus
from gpu_worker.model import BatchStepCallback


def step_callback(
    jobs: list[Generation],
    *,
    worker_name: str,
    interval: float,
    cancel: Callable[[Generation], object],
    report: Callable[[Generation, torch.Tensor], None],
    preempt: Callable[[Generation, int], object] = lambda job, step: None,
) -> BatchStepCallback:
    """Per step: one Redis round trip for every job's cancel and preempt flags (a job its owner
    canceled is handed to ``cancel``, a preempted one to ``preempt`` with the steps it finished;
    both stop); at most every ``interval`` seconds one UPDATE of the batch's progress and
    ``report(job, its latents)`` for each job still running. The last step is always reported;
    its UPDATE is the finish's, which writes the step with the status."""
    last_sent = 0.0
    keys = [queues.cancel_flag_key(str(job.id)) for job in jobs]
    preempt_keys = [queues.preempt_flag_key(str(job.id)) for job in jobs]
    runs = [queues.run_token(job).encode() for job in jobs]  # a flag stops only the run it names

    def on_step(step: int, total: int, latents: dict[int, torch.Tensor]) -> set[int]:
        nonlocal last_sent
        active = list(latents)
        pipe = queues.redis_client().pipeline()
        for index in active:
            pipe.exists(keys[index])
            pipe.get(preempt_keys[index])
        flags = pipe.execute()
        stopped: set[int] = set()
        for index, canceled, preempted in zip(active, flags[::2], flags[1::2], strict=True):
            if canceled:  # the owner's wish comes first
                cancel(jobs[index])
            elif preempted == runs[index] and step < total:  # at its last step a job just finishes
                preempt(jobs[index], step)
            else:
                continue
            stopped.add(index)
        running = [index for index in active if index not in stopped]
        now = time.monotonic()
        if not running or (step < total and now - last_sent < interval):
            return stopped
        last_sent = now
        if step < total:  # the last step reaches the row with the finish, a moment later
            with hint_transaction():  # the row's step is a hint: no wait for the disk
                Generation.objects.filter(
                    pk__in=[jobs[i].pk for i in running],
                    status=GenerationStatus.RUNNING,
                    worker_name=worker_name,
                ).update(step=step, total_steps=total)
        for index in running:  # the runner's memo scope: each user's webhooks read once per job
            job = jobs[index]
            job.step, job.total_steps = step, total
            report(job, latents[index])
        return stopped

    return on_step

"""Preemption's rule, a dispatcher chore: a priority job must not wait behind free and relax work.

When a priority-lane job has been queued longer than ``ATELIER_PREEMPT_AFTER`` seconds and every
serving worker of its pool is busy with free or relax jobs (no worker idle, none on a priority or
standard job), the worker whose work is the least urgent (the lowest lane, then the latest
started) is asked to stop its jobs: a flag beside the cancel flags, which the worker reads in the
same Redis round trip each step (gpu_worker/progress.py). At its next step boundary it saves each
job's latents and sampler position and gives the jobs back to their lane
(`generations.lifecycle_preemption.preempt`); the priority job takes its place.

One preemption at a time per pool: while a flagged job still runs, nothing more is flagged, and a
job is never flagged twice. Workflow jobs (node graphs) do not stop for the flag, so a worker
running one is never chosen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from generations import queues
from generations.models import Generation, GenerationKind, GenerationStatus
from generations.workers import all_heartbeats

log = logging.getLogger(__name__)

PRIORITY_LANE = "priority"
PREEMPTIBLE_LANES = ("free", "relax")
FLAG_SECONDS = 600  # a flag the worker never saw (it died) expires; the reconciler has the job


@dataclass(frozen=True)
class Busy:
    """A serving worker of the pool and the jobs it runs."""

    worker: str
    jobs: list[Generation]

    @property
    def urgency(self) -> tuple[int, float]:
        """Lower is less urgent: the lowest lane first, then the latest started."""
        lane = min(settings.LANES.index(job.lane) for job in self.jobs)
        started = max(job.started_at.timestamp() if job.started_at else 0.0 for job in self.jobs)
        return (-lane, -started)


def preempt_for_waiting_priority(now: datetime | None = None) -> int:
    """Flag the jobs of at most one worker per pool (see the module docstring); the jobs flagged."""
    if settings.ATELIER_PREEMPT_AFTER <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.ATELIER_PREEMPT_AFTER)
    waiting = Generation.objects.filter(
        status=GenerationStatus.QUEUED, lane=PRIORITY_LANE, lane_entered_at__lte=cutoff
    )
    pools = sorted(set(waiting.values_list("pool", flat=True)))
    if not pools:
        return 0
    beats = [(name, state) for name, state in all_heartbeats() if state.get("serving")]
    flagged = 0
    for pool in pools:
        victims = choose_victims([(n, s) for n, s in beats if pool in (s.get("pools") or [])])
        flagged += flag(victims, pool)
    return flagged


def choose_victims(workers: list[tuple[str, dict[str, Any]]]) -> list[Generation]:
    """The jobs to stop among these serving workers of one pool: none when any worker is idle or
    busy with a paid lane, or when a flagged job is still running."""
    if not workers:
        return []
    jobs_of = {name: [str(job) for job in state.get("current_jobs") or []] for name, state in workers}
    if not all(jobs_of.values()):
        return []  # an idle worker takes the priority job soon enough
    ids = [job for jobs in jobs_of.values() for job in jobs]
    rows = {str(g.id): g for g in Generation.objects.filter(pk__in=ids, status=GenerationStatus.RUNNING)}
    busy: list[Busy] = []
    for name, job_ids in jobs_of.items():
        jobs = [rows[job] for job in job_ids if job in rows]
        if not jobs or any(job.lane not in PREEMPTIBLE_LANES for job in jobs):
            return []  # paid work, or jobs that are finishing: the priority job waits
        busy.append(Busy(name, jobs))
    if already_flagged([job for entry in busy for job in entry.jobs]):
        return []  # one preemption at a time, and never the same run twice
    stoppable = [entry for entry in busy if all(job.kind != GenerationKind.WORKFLOW for job in entry.jobs)]
    if not stoppable:
        return []
    return min(stoppable, key=lambda entry: entry.urgency).jobs


def already_flagged(jobs: list[Generation]) -> bool:
    """Whether one of these runs has a flag (a flag left from a job's earlier run does not count)."""
    if not jobs:
        return False
    values = queues.redis_client().mget([queues.preempt_flag_key(str(job.id)) for job in jobs])
    return any(
        value is not None and value.decode() == queues.run_token(job)
        for job, value in zip(jobs, values, strict=True)
    )


def flag(jobs: list[Generation], pool: str) -> int:
    """Ask the worker running these jobs to stop their runs at their next step."""
    client = queues.redis_client()
    pipe = client.pipeline()
    for job in jobs:
        pipe.set(queues.preempt_flag_key(str(job.id)), queues.run_token(job), ex=FLAG_SECONDS)
    flagged = sum(1 for done in pipe.execute() if done)
    if flagged:
        names = ", ".join(f"{job.id} ({job.lane})" for job in jobs)
        log.info(
            "preempting %s on %s for a waiting priority job of pool %s", names, jobs[0].worker_name, pool
        )
    return flagged

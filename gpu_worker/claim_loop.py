"""The worker's job loop: take a job id from the pool's queues, run it, forget the RQ job.

The queues stay RQ's (`generations.queues` enqueues with RQ's format, so dashboards, the staff's
queue moves and in-process test workers keep working), but a worker does not run RQ's
`SimpleWorker`: its per-job bookkeeping — started, finished and failed registries, execution
records, job and worker heartbeats, about twenty Redis round trips a job, most of them after the
job function returned — duplicated what the database row and `gpu_worker.heartbeat` already hold,
and took as long as a trivial job itself (bench/latency.py). What this loop keeps of RQ's worker:

- the choice of job: the queue class's `take_any` (affinity, lane order, the doorbell), which
  takes the job's id off its list without reading the RQ job: the id names the generation;
- the pool's time limit: `JobTimeoutException` raised inside the job by SIGALRM, as RQ does;
- warm shutdown: SIGTERM or SIGINT while a job runs lets it finish, then the loop ends; while idle
  the loop ends at once; a second signal stops at once (cold);
- burst mode: return when no job waits.

A job taken off its list and not finished (the process killed) is recovered from the database by
the dispatcher, as before: the row is the durable record, the RQ job only a wake-up.
"""

from __future__ import annotations

import logging
import signal
import types
from collections.abc import Callable, Sequence

from redis import Redis
from rq import Queue
from rq.exceptions import DequeueTimeout
from rq.job import Job
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty

from gpu_worker.affinity import AffinityQueue, Taken
from gpu_worker.batching import generation_id_of

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 5  # seconds an idle dequeue blocks before the loop looks at its stop flag again


class StopRequested(Exception):
    """A signal arrived while the loop was idle: leave now."""


class ClaimLoop:
    def __init__(
        self,
        queue_names: Sequence[str],
        *,
        connection: Redis,
        queue_class: type[AffinityQueue],
        run: Callable[[str], object],
        timeout_for: Callable[[str], int],
    ) -> None:
        self.connection = connection
        self.queues: list[Queue] = [queue_class(name, connection=connection) for name in queue_names]
        self.queue_class = queue_class
        self.run = run
        self.timeout_for = timeout_for
        self.busy = False
        self.stop_requested = False

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)

    def on_signal(self, signum: int, frame: types.FrameType | None) -> None:
        if self.stop_requested:
            raise SystemExit(f"cold shutdown (signal {signum})")
        self.stop_requested = True
        if not self.busy:
            raise StopRequested
        log.warning("warm shutdown: finishing the current job first (signal again to stop now)")

    def work(self, *, burst: bool = False) -> int:
        """Run jobs until stopped (or, in burst mode, until none waits). Returns how many ran."""
        done = 0
        try:
            while not self.stop_requested:
                taken = self.take(burst=burst)
                if taken is None:
                    if burst:
                        return done
                    continue
                self.perform(taken)
                done += 1
        except StopRequested:
            pass
        return done

    def take(self, *, burst: bool) -> Taken | None:
        try:
            return self.queue_class.take_any(
                self.queues, None if burst else IDLE_TIMEOUT, connection=self.connection
            )
        except DequeueTimeout:
            return None

    def perform(self, taken: Taken) -> None:
        self.busy = True
        key = Job.key_for(taken.job_id)
        try:
            generation_id = generation_id_of(taken.job_id.encode()) or self.argument(taken.job_id)
            limit = self.timeout_for(taken.queue.name)
            with UnixSignalDeathPenalty(limit, JobTimeoutException, job_id=taken.job_id):
                self.run(generation_id)
        except JobTimeoutException:
            # Raised after the runner's own handling (between its steps): the row is the
            # runner's to settle; the dispatcher recovers a job left running.
            log.warning("job %s ran past its pool's time limit", taken.job_id)
        except Exception:
            # The runner settles every failure it can; what escapes (the database gone) leaves the
            # row to the dispatcher's recovery, as a crashed worker would.
            log.exception("job %s failed outside the runner", taken.job_id)
        finally:
            self.busy = False
            self.connection.delete(key)  # result_ttl=0: nothing reads a finished RQ job

    def argument(self, job_id: str) -> str:
        """The generation id of a job not named after it: its first argument."""
        return str(Job.fetch(job_id, connection=self.connection).args[0])

"""The worker's job loop (gpu_worker/claim_loop.py) on a real Redis: lane order, no RQ bookkeeping
left behind, the pool's time limit, warm shutdown."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from rq import Queue

from generations import queues
from gpu_worker.affinity import affinity_queue_class
from gpu_worker.claim_loop import ClaimLoop

LANES = ["gen.loop.priority", "gen.loop.standard"]


@pytest.fixture(autouse=True)
def empty_redis() -> None:
    queues.redis_client().flushdb()


def enqueue(lane: str) -> str:
    generation_id = str(uuid.uuid4())
    Queue(lane, connection=queues.redis_client()).enqueue_call(
        queues.JOB_FUNCTION, args=(generation_id,), job_id=f"gen-{generation_id}-0", result_ttl=0
    )
    return generation_id


def loop(run: object, timeout: int = 60) -> ClaimLoop:
    return ClaimLoop(
        LANES,
        connection=queues.redis_client(),
        queue_class=affinity_queue_class("loop-test", frozenset),
        run=run,  # type: ignore[arg-type]
        timeout_for=lambda name: timeout,
    )


def test_burst_runs_every_job_higher_lane_first_and_leaves_no_rq_bookkeeping() -> None:
    standard = [enqueue(LANES[1]) for _ in range(3)]
    priority = enqueue(LANES[0])
    ran: list[str] = []
    assert loop(ran.append).work(burst=True) == 4
    assert ran == [priority, *standard]
    leftovers = [k.decode() for k in queues.redis_client().scan_iter("rq:*")]
    # Queue names RQ keeps in its set of queues may stay; no job, registry or worker record.
    assert [k for k in leftovers if not k.startswith("rq:queues")] == []


def test_a_job_past_its_pools_time_limit_is_stopped_and_the_next_one_runs() -> None:
    slow, quick = enqueue(LANES[1]), enqueue(LANES[1])
    ran: list[str] = []

    def run(generation_id: str) -> None:
        ran.append(generation_id)
        if generation_id == slow:
            time.sleep(5)  # the alarm interrupts this after 1 s
            ran.append("not interrupted")

    assert loop(run, timeout=1).work(burst=True) == 2
    assert ran == [slow, quick]  # no "not interrupted"


def test_a_signal_while_busy_lets_the_job_finish_then_the_loop_ends() -> None:
    first, second = enqueue(LANES[1]), enqueue(LANES[1])
    ran: list[str] = []
    job_loop = loop(None)

    def run(generation_id: str) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while this job runs
        ran.append(generation_id)

    job_loop.run = run
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    job_loop.install_signals()
    try:
        assert job_loop.work(burst=True) == 1
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert ran == [first]
    assert queues.redis_client().lrange(queues.queue_key(LANES[1]), 0, -1) == [f"gen-{second}-0".encode()]


def test_a_signal_while_idle_ends_the_loop_at_once() -> None:
    job_loop = loop(lambda generation_id: None)
    previous = signal.getsignal(signal.SIGTERM)
    job_loop.install_signals()
    signal.setitimer(signal.ITIMER_REAL, 0.3)  # SIGALRM -> SIGTERM while the loop waits for work
    signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
    try:
        assert job_loop.work(burst=False) == 0  # without the signal it would wait for work forever
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

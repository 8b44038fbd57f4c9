"""Model affinity: which queued job a worker takes, on real Redis queues and real heartbeats."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from rq.exceptions import DequeueTimeout
from rq.job import Job

from accounts.models import User
from core.model_catalog import ModelSpec
from generations import queues
from generations.models import Generation
from generations.registry import lanes_for_pools
from generations.workers import pool_workers_key
from gpu_worker.affinity import AffinityQueue, affinity_queue_class
from gpu_worker.heartbeat import Heartbeat
from tests.factories import queued_generation

pytestmark = pytest.mark.django_db
POOL = "affinity-pool"


@pytest.fixture
def models(settings: Any) -> Iterator[dict[str, ModelSpec]]:
    """Two models in a pool no live worker serves; only their paths matter here."""
    specs = {name: ModelSpec(name=name, path=f"/models/{name}", pool=POOL) for name in ("alpha", "beta")}
    settings.ATELIER_MODELS = {**settings.ATELIER_MODELS, **specs}
    settings.ATELIER_AFFINITY_WAIT = 30.0
    yield specs
    client = queues.redis_client()
    client.delete(*(f"rq:queue:{name}" for name in lanes_for_pools([POOL])), pool_workers_key(POOL))


def worker(name: str, holds: list[str], *, busy: bool = False) -> type[AffinityQueue]:
    """A worker as others see it (its heartbeat) and as it chooses (its queue class)."""
    beat = Heartbeat(name, {"pools": [POOL], "models": holds})
    beat.current_jobs = ["something"] if busy else []
    beat.beat()
    return affinity_queue_class(name, lambda: frozenset(holds))


def enqueue(model: str, lane: str = "standard") -> Generation:
    user, _ = User.objects.get_or_create(username="affine")
    generation = queued_generation(user, model_name=model, pool=POOL, lane=lane)
    queues.enqueue(generation)
    return generation


def lanes_of(queue_class: type[AffinityQueue]) -> list[AffinityQueue]:
    return [queue_class(name, connection=queues.redis_client()) for name in lanes_for_pools([POOL])]


def take(queue_class: type[AffinityQueue]) -> Generation | None:
    """What the worker takes in burst mode: None once nothing is waiting for anyone."""
    picked = queue_class.dequeue_any(lanes_of(queue_class), None, connection=queues.redis_client())
    if picked is None:
        return None
    return Generation.objects.get(pk=picked[0].args[0])


def leaves_waiting(queue_class: type[AffinityQueue]) -> bool:
    """One look at the queues takes nothing, and jobs are waiting (left to other workers)."""
    return queue_class.pick(lanes_of(queue_class), queues.redis_client()) is True


def test_a_job_is_left_to_the_idle_worker_that_holds_its_model(models: dict[str, ModelSpec]) -> None:
    holder = worker("holds-alpha", ["/models/alpha"])
    other = worker("holds-nothing", [])
    alpha, beta = enqueue("alpha"), enqueue("beta")

    assert take(other) == beta  # alpha is first in line, but its model is loaded elsewhere
    assert take(holder) == alpha
    assert take(other) is None


def test_a_worker_takes_a_later_job_of_its_own_model_first(models: dict[str, ModelSpec]) -> None:
    holder = worker("holds-alpha", ["/models/alpha"])
    beta, alpha = enqueue("beta"), enqueue("alpha")

    assert take(holder) == alpha
    assert take(holder) == beta  # nobody else holds beta: it loads it rather than let it wait


def test_jobs_of_a_held_model_do_not_starve_an_older_job(models: dict[str, ModelSpec]) -> None:
    holder = worker("holds-alpha", ["/models/alpha"])
    beta = enqueue("beta")
    job = Job.fetch(queues.job_id_for(beta), connection=queues.redis_client())
    job.meta["at"] -= 60  # queued a minute before the alpha jobs behind it
    job.save_meta()
    alphas = [enqueue("alpha"), enqueue("alpha")]

    assert [take(holder), take(holder), take(holder)] == [beta, *alphas]


def test_a_busy_holder_does_not_keep_the_job_waiting(models: dict[str, ModelSpec]) -> None:
    worker("holds-alpha", ["/models/alpha"], busy=True)
    other = worker("holds-nothing", [])
    alpha = enqueue("alpha")

    assert take(other) == alpha


def test_a_job_left_too_long_is_taken_by_anyone(models: dict[str, ModelSpec], settings: Any) -> None:
    settings.ATELIER_AFFINITY_WAIT = 0.2
    worker("holds-alpha", ["/models/alpha"])  # idle, but never comes for it
    other = worker("holds-nothing", [])
    alpha = enqueue("alpha")
    assert leaves_waiting(other)
    time.sleep(0.3)

    assert take(other) == alpha


def test_in_burst_mode_a_worker_waits_for_jobs_left_to_others(
    models: dict[str, ModelSpec], settings: Any
) -> None:
    """It does not stop while a job waits for a holder that never comes: the job ages, it takes it."""
    settings.ATELIER_AFFINITY_WAIT = 0.3
    worker("holds-alpha", ["/models/alpha"])
    other = worker("holds-nothing", [])
    alpha = enqueue("alpha")

    assert take(other) == alpha


def test_jobs_left_to_a_holder_keep_lower_lanes_waiting(models: dict[str, ModelSpec]) -> None:
    """A worker does not start a long lower-lane job while a higher-lane one waits for its holder:
    if the holder turned out to be busy, the higher-lane job would wait for that whole run."""
    holder = worker("holds-alpha", ["/models/alpha"])
    other = worker("holds-nothing", [])
    alpha_priority = enqueue("alpha", lane="priority")
    beta_standard = enqueue("beta", lane="standard")

    assert leaves_waiting(other)
    assert take(holder) == alpha_priority
    assert take(other) == beta_standard


def test_affinity_never_puts_a_lower_lane_first(models: dict[str, ModelSpec]) -> None:
    holder = worker("holds-alpha", ["/models/alpha"])
    alpha_standard = enqueue("alpha", lane="standard")
    beta_priority = enqueue("beta", lane="priority")

    assert list(settings.LANES).index("priority") < list(settings.LANES).index("standard")
    assert [take(holder), take(holder)] == [beta_priority, alpha_standard]


def test_affinity_off_is_plain_queue_order(models: dict[str, ModelSpec], settings: Any) -> None:
    settings.ATELIER_AFFINITY_WAIT = 0
    worker("holds-alpha", ["/models/alpha"])
    other = worker("holds-nothing", [])
    alpha, beta = enqueue("alpha"), enqueue("beta")

    assert [take(other), take(other)] == [alpha, beta]


def test_an_idle_worker_waits_for_work_and_takes_it_when_it_comes(
    models: dict[str, ModelSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Woken by the enqueue's doorbell: the worker waits up to 120 s, and would not look at the
    queues again on its own before then (IDLE_LOOK is set beyond it)."""
    monkeypatch.setattr("gpu_worker.affinity.IDLE_LOOK", 600.0)
    other = worker("holds-nothing", [])
    lanes = [other(name, connection=queues.redis_client()) for name in lanes_for_pools([POOL])]
    with pytest.raises(DequeueTimeout):
        other.dequeue_any(lanes, 1, connection=queues.redis_client())
    picked: list[Any] = []
    waiting = threading.Thread(
        target=lambda: picked.append(other.dequeue_any(lanes, 120, connection=queues.redis_client()))
    )
    waiting.start()

    user = User.objects.create_user("later")
    generation = queued_generation(user, model_name="beta", pool=POOL)
    queues.enqueue(generation)
    waiting.join(timeout=30)

    assert not waiting.is_alive(), "the worker slept through the doorbell"
    assert picked[0] is not None and picked[0][0].args == (str(generation.id),)


def test_a_new_worker_preloads_what_the_other_workers_lack(settings: Any, tmp_path: Path) -> None:
    from gpu_worker.runner import GenerationRunner
    from gpu_worker.tiny_model import ensure_tiny_model

    paths = {name: tmp_path / name for name in ("alpha", "beta")}
    for path in paths.values():
        ensure_tiny_model(path)
    paths["beta"] = tmp_path / "beta-link"  # configured through a symlink: named as configured
    paths["beta"].symlink_to(tmp_path / "beta")
    specs = {name: ModelSpec(name=name, path=str(path), pool=POOL) for name, path in paths.items()}
    settings.ATELIER_MODELS = {**settings.ATELIER_MODELS, **specs}
    settings.ATELIER_HOT_MODELS = 1
    worker("already-up", [str(paths["alpha"])])
    runner = GenerationRunner(name="fresh")
    try:
        runner.preload([POOL])
    finally:
        runner.publisher.close()
        queues.redis_client().delete(pool_workers_key(POOL))

    assert runner.cache.paths() == [os.path.realpath(paths["beta"])]
    assert runner.cache.loads == 1  # room for one model: it loads one, not both in turn
    assert runner.held_models() == {str(paths["beta"])}  # what jobs and heartbeats call it


def test_a_job_taken_by_a_worker_that_died_before_claiming_it_is_queued_again(
    models: dict[str, ModelSpec],
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from generations.dispatcher import tick

    beta = enqueue("beta")
    key = f"rq:queue:{beta.queue_name}"
    assert queues.redis_client().lrem(key, 1, queues.job_id_for(beta))  # taken, then the worker died
    Generation.objects.filter(pk=beta.pk).update(created_at=timezone.now() - timedelta(minutes=5))

    assert tick().reenqueued == 1
    assert queues.redis_client().lrange(key, 0, -1) == [queues.job_id_for(beta).encode()]
    assert take(worker("holds-nothing", [])) == beta


def test_a_take_names_the_job_without_reading_it(models: dict[str, ModelSpec]) -> None:
    """The claim loop's take: the job's id off its list, in order; the RQ job is not read (it
    stays until the loop deletes it)."""
    me = worker("taker", ["/models/alpha"])
    lanes = lanes_of(me)
    first, second = enqueue("alpha"), enqueue("alpha")
    taken = me.take_any(lanes, None, connection=queues.redis_client())
    assert taken is not None and taken.job_id == queues.job_id_for(first)
    assert queues.redis_client().exists(f"rq:job:{taken.job_id}")
    after = me.take_any(lanes, None, connection=queues.redis_client())
    assert after is not None and after.job_id == queues.job_id_for(second)
    assert me.take_any(lanes, None, connection=queues.redis_client()) is None

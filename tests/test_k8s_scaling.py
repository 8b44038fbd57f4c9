"""The scaling rule of the rendered ScaledObjects, simulated (scripts/k8s_scaling.py): the replica
count KEDA and its HPA set from the queue depth over time, and how long a burst of 500 jobs waits
with and without hot standby workers. Simulated seconds, not wall-clock ones."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from scripts import k8s_manifests, k8s_scaling
from scripts.k8s_scaling import ScalingRule, replicas_over_time, simulate

JOB_SECONDS = 6  # an SD 1.5 image at 20 steps on a mid-range GPU
START_SECONDS = 90  # a new worker pod: scheduled, image present, weights loaded


@pytest.fixture(scope="module")
def sd15() -> ScalingRule:
    manifests = k8s_manifests.render(k8s_manifests.load_values(k8s_manifests.DEFAULT_VALUES))
    [scaled] = [
        m for m in manifests if m["kind"] == "ScaledObject" and m["metadata"]["name"] == "atelier-worker-sd15"
    ]
    return ScalingRule.from_scaled_object(scaled)


def test_the_rule_is_read_from_the_rendered_scaled_object(sd15: ScalingRule) -> None:
    assert (sd15.min_replicas, sd15.max_replicas, sd15.target) == (1, 8, 10)
    assert (sd15.polling_interval, sd15.cooldown_period, sd15.down_window) == (15, 300, 300)


def test_replicas_follow_the_queue_within_their_bounds(sd15: ScalingRule) -> None:
    depths = [0, 5, 35, 200, 200, 200] + [0] * 60
    replicas = replicas_over_time(sd15, depths)
    assert replicas[:6] == [1, 1, 4, 8, 8, 8]  # ceil(depth / 10), at most +4 pods (or +100 %) a poll
    assert min(replicas) == 1 and max(replicas) == 8
    # Down only once the highest recommendation of five minutes is lower, then a pod a minute.
    last_busy_poll = 5
    held = (sd15.down_window // sd15.polling_interval) + last_busy_poll
    assert set(replicas[6:held]) == {8}
    assert replicas[held : held + 9 : 4] == [7, 6, 5]
    assert replicas[-1] == 1  # the hot standby stays


def test_an_optional_pool_wakes_on_its_first_job_and_sleeps_after_the_cooldown(sd15: ScalingRule) -> None:
    optional = replace(sd15, min_replicas=0)
    depths = [0, 0, 3, 3, 0] + [0] * 40
    replicas = replicas_over_time(optional, depths)
    assert replicas[:4] == [0, 0, 1, 1]
    last_busy = 3 * optional.polling_interval
    polls_to_sleep = optional.cooldown_period // optional.polling_interval
    assert replicas[3 + polls_to_sleep - 1] == 1  # still within the cooldown
    assert (
        replicas[3 + polls_to_sleep] == 0
        and last_busy + optional.cooldown_period == (3 + polls_to_sleep) * 15
    )
    assert set(replicas[3 + polls_to_sleep :]) == {0}


def outcome(rule: ScalingRule, standby: int) -> Any:
    return simulate(
        replace(rule, min_replicas=standby), burst=500, job_seconds=JOB_SECONDS, start_seconds=START_SECONDS
    )


def test_a_burst_of_500_jobs_waits_less_with_standby_workers(sd15: ScalingRule) -> None:
    cold, warm, warmer = outcome(sd15, 0), outcome(sd15, 1), outcome(sd15, 2)
    for run in (cold, warm, warmer):
        assert len(run.waits) == 500  # every job ran
        assert max(run.replicas) == sd15.max_replicas  # 500 / 10 jobs a worker: the ceiling
    # Without a standby nothing runs until KEDA has seen the queue and a worker has started.
    assert cold.waits[0] >= START_SECONDS
    assert warm.waits[0] == warmer.waits[0] == 0
    assert warmer.mean_wait < warm.mean_wait < cold.mean_wait
    assert warmer.max_wait <= warm.max_wait < cold.max_wait
    # And afterwards: the optional pool back to zero, the standby ones at their minimum.
    assert (cold.replicas[-1], warm.replicas[-1], warmer.replicas[-1]) == (0, 1, 2)


def test_the_cli_reports_the_waits_per_pool(capsys: pytest.CaptureFixture[str]) -> None:
    assert k8s_scaling.main(["--burst", "100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("atelier-worker-sd15: standby 0: first job after") for line in lines)
    assert any(line.startswith("atelier-worker-sdxl: standby 2:") for line in lines)

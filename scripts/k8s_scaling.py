"""What KEDA does with a pool's workers, simulated second by second from the rendered ScaledObject.

    python scripts/k8s_scaling.py --values deploy/k8s/values.yaml [--burst 500]

KEDA reads the pool's queued jobs every `pollingInterval` seconds and the HPA it drives sets
`ceil(queued / target)` workers, within `minReplicaCount` and `maxReplicaCount`; while the queue is
empty an optional pool (minimum 0) keeps one worker for `cooldownPeriod`, then none. Scaling up adds
at most max(4 pods, 100 %) per 15 s (the HPA's default); scaling down takes the highest
recommendation of the stabilization window and one pod a minute (scripts/k8s_workers.py), and a
worker that is told to stop finishes its job first. A new worker serves `start_seconds` after it
is asked for (node, image, weights). Jobs are served in order, one per worker at a time.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.k8s_manifests import DEFAULT_VALUES, load_values, render

HPA_UP_PODS, HPA_UP_PERIOD = 4, 15  # the HPA's default scale-up policy: +4 pods or +100 % per 15 s


@dataclass(frozen=True)
class ScalingRule:
    min_replicas: int
    max_replicas: int
    target: int  # queued jobs per worker
    polling_interval: int
    cooldown_period: int
    down_window: int = 300
    down_pods: int = 1
    down_period: int = 60

    @classmethod
    def from_scaled_object(cls, manifest: dict[str, Any]) -> ScalingRule:
        spec = manifest["spec"]
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        [policy] = behavior["policies"]
        modifiers = spec["advanced"].get("scalingModifiers")
        target = modifiers["target"] if modifiers else spec["triggers"][0]["metadata"]["threshold"]
        return cls(
            min_replicas=spec["minReplicaCount"],
            max_replicas=spec["maxReplicaCount"],
            target=int(target),
            polling_interval=spec["pollingInterval"],
            cooldown_period=spec["cooldownPeriod"],
            down_window=behavior["stabilizationWindowSeconds"],
            down_pods=policy["value"],
            down_period=policy["periodSeconds"],
        )


@dataclass
class Autoscaler:
    """KEDA and the HPA it drives: one `poll` per polling interval gives the replica count."""

    rule: ScalingRule
    replicas: int = -1
    last_active: float = -math.inf
    last_down: float = -math.inf
    recommendations: deque[tuple[int, int]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.replicas < 0:
            self.replicas = self.rule.min_replicas

    def poll(self, now: int, queued: int) -> int:
        rule = self.rule
        if queued > 0:
            self.last_active = now
        if self.replicas == 0:
            # KEDA activates the pool (0 -> 1); the HPA takes over from its next look.
            self.replicas = 1 if queued > 0 else 0
            return self.replicas
        if rule.min_replicas == 0 and queued == 0 and now - self.last_active >= rule.cooldown_period:
            self.replicas = 0
            self.recommendations.clear()
            return 0
        wanted = min(max(math.ceil(queued / rule.target), max(rule.min_replicas, 1)), rule.max_replicas)
        self.recommendations.append((now, wanted))
        while self.recommendations and self.recommendations[0][0] <= now - rule.down_window:
            self.recommendations.popleft()
        if wanted > self.replicas:
            step = max(HPA_UP_PODS, self.replicas) * max(1, rule.polling_interval // HPA_UP_PERIOD)
            self.replicas = min(wanted, self.replicas + step)
        else:
            stable = max(count for _, count in self.recommendations)
            if stable < self.replicas and now - self.last_down >= rule.down_period:
                self.replicas = max(stable, self.replicas - rule.down_pods)
                self.last_down = now
        return self.replicas


def replicas_over_time(rule: ScalingRule, depths: list[int]) -> list[int]:
    """The replica count after each poll, for the queue depth seen at each poll."""
    scaler = Autoscaler(rule)
    return [scaler.poll(i * rule.polling_interval, depth) for i, depth in enumerate(depths)]


@dataclass
class Worker:
    ready_at: float
    busy_until: float = 0.0
    stopping: bool = False


@dataclass(frozen=True)
class Outcome:
    waits: list[float]  # seconds each job waited for a worker, in arrival order
    replicas: list[int]  # the replica count each second

    @property
    def mean_wait(self) -> float:
        return sum(self.waits) / len(self.waits)

    @property
    def max_wait(self) -> float:
        return max(self.waits)


def simulate(
    rule: ScalingRule,
    *,
    burst: int,
    job_seconds: int,
    start_seconds: int,
    arrive_at: int = 1,
    horizon: int = 7200,
) -> Outcome:
    """A burst of jobs queued at once; each second workers take jobs and KEDA polls on its interval."""
    scaler = Autoscaler(rule)
    workers = [Worker(ready_at=0) for _ in range(rule.min_replicas)]
    waiting: deque[int] = deque()
    waits: list[float] = []
    replicas: list[int] = []
    for now in range(horizon):
        if now == arrive_at:
            waiting.extend([now] * burst)
        workers = [w for w in workers if not (w.stopping and w.busy_until <= now)]
        if now % rule.polling_interval == 0:
            resize(workers, scaler.poll(now, len(waiting)), now, start_seconds)
        for worker in workers:
            if waiting and not worker.stopping and worker.ready_at <= now and worker.busy_until <= now:
                waits.append(now - waiting.popleft())
                worker.busy_until = now + job_seconds
        replicas.append(sum(not w.stopping for w in workers))
        drained = len(waits) == burst and all(w.busy_until <= now for w in workers)
        settled = scaler.replicas == rule.min_replicas and now - scaler.last_active > rule.cooldown_period
        if drained and settled:
            break
    if len(waits) < burst:
        raise RuntimeError(f"{burst - len(waits)} jobs still waiting after {horizon} s")
    return Outcome(waits=waits, replicas=replicas)


def resize(workers: list[Worker], count: int, now: int, start_seconds: int) -> None:
    """Start or stop workers to reach `count`; the ones stopped first are those not serving yet,
    then idle ones, and a busy one finishes its job before it goes."""
    active = [w for w in workers if not w.stopping]
    for _ in range(count - len(active)):
        workers.append(Worker(ready_at=now + start_seconds))
    surplus = len(active) - count
    for worker in sorted(active, key=lambda w: (w.ready_at <= now, w.busy_until > now))[: max(surplus, 0)]:
        worker.stopping = True
        if worker.ready_at > now:
            worker.busy_until = 0  # never started: gone at once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--values", type=Path, default=DEFAULT_VALUES)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--job-seconds", type=int, default=6)
    parser.add_argument("--start-seconds", type=int, default=90)
    options = parser.parse_args(argv)
    for manifest in render(load_values(options.values)):
        if manifest["kind"] != "ScaledObject":
            continue
        rule = ScalingRule.from_scaled_object(manifest)
        for standby in sorted({0, 1, 2, rule.min_replicas}):
            outcome = simulate(
                replace(rule, min_replicas=standby),
                burst=options.burst,
                job_seconds=options.job_seconds,
                start_seconds=options.start_seconds,
            )
            name = manifest["metadata"]["name"]
            print(
                f"{name}: standby {standby}: first job after {outcome.waits[0]:.0f} s, "
                f"mean wait {outcome.mean_wait:.0f} s, longest {outcome.max_wait:.0f} s, "
                f"peak {max(outcome.replicas)} workers"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

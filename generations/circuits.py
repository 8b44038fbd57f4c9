"""Circuit breakers per model, shared through Redis by the web processes and the workers.

    closed  -- ATELIER_CIRCUIT_LOAD_FAILURES load failures in a row, or an error rate over
               ATELIER_CIRCUIT_ERROR_RATE in the last jobs -------------------------> open
    open    -- ATELIER_CIRCUIT_OPEN_SECONDS later, the next submission is let through -> half-open
    half-open -- the probe's job succeeds --> closed;  it fails --> open again

While a model's circuit is open, a submission for it is refused at once (``503 model_unavailable``
with ``Retry-After``: nothing stored, queued or charged) or, where the model names a fallback and
the request allows it, runs on the fallback (`generations.services`). The workers report what
happens to each job (`record_job`) and each model load (`record_load_failure`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError

from core.redis import redis_client

log = logging.getLogger(__name__)

# Codes of failures that say something about the model or its workers, not about the request.
MODEL_FAILURES = frozenset({"model_unavailable", "generation_failed", "timeout", "out_of_memory"})


def state_key(model: str) -> str:
    """A hash: ``until`` (epoch seconds the circuit stays open), ``reason``, ``load_failures``."""
    return f"atelier:circuit:{model}"


def outcomes_key(model: str) -> str:
    """A list of the last jobs' outcomes, newest first: "1" succeeded, "0" failed."""
    return f"atelier:circuit:{model}:outcomes"


def probe_key(model: str) -> str:
    return f"atelier:circuit:{model}:probe"


@dataclass(frozen=True)
class Circuit:
    model: str
    state: str  # "closed", "open" or "half_open" (a probe may go, or has gone)
    reason: str = ""
    retry_after: int = 0  # seconds until a submission may be let through again


def circuit_of(model: str, now: float | None = None) -> Circuit:
    """The model's circuit as it stands (closed when Redis cannot say: never refuse on a guess)."""
    now = time.time() if now is None else now
    try:
        raw = redis_client().hgetall(state_key(model))
    except RedisError:
        return Circuit(model, "closed")
    fields = {key.decode(): value.decode() for key, value in raw.items()}
    if "until" not in fields:
        return Circuit(model, "closed")
    until = float(fields["until"])
    reason = fields.get("reason", "")
    if now < until:
        return Circuit(model, "open", reason, math.ceil(until - now))
    return Circuit(model, "half_open", reason, settings.ATELIER_CIRCUIT_OPEN_SECONDS)


def admit(model: str) -> Circuit:
    """Whether a new job for the model may go: a closed circuit, or a half-open one whose probe
    this submission becomes (one at a time). The circuit is returned with its state: "closed"
    or "probe" when the job may go, "open" (with ``retry_after``) when it may not."""
    circuit = circuit_of(model)
    if circuit.state != "half_open":
        return circuit
    seconds = settings.ATELIER_CIRCUIT_OPEN_SECONDS
    try:
        if redis_client().set(probe_key(model), "1", nx=True, ex=max(1, seconds)):
            return Circuit(model, "probe", circuit.reason)
        wait = int(redis_client().ttl(probe_key(model)))
    except RedisError:
        return Circuit(model, "closed")
    return Circuit(model, "open", circuit.reason, max(1, wait))


def give_back_probe(model: str) -> None:
    """The probe's submission was refused after all (no credits, a cap): another may probe."""
    with contextlib.suppress(RedisError):
        redis_client().delete(probe_key(model))


def open_circuit(model: str, reason: str) -> None:
    until = time.time() + settings.ATELIER_CIRCUIT_OPEN_SECONDS
    pipe = redis_client().pipeline()
    pipe.hset(state_key(model), mapping={"until": until, "reason": reason, "load_failures": 0})
    pipe.delete(outcomes_key(model), probe_key(model))
    pipe.execute()
    log.warning("circuit of model %s opened: %s", model, reason)


def close_circuit(model: str) -> None:
    redis_client().delete(state_key(model), outcomes_key(model), probe_key(model))


def record_load_failure(model: str) -> None:
    """A worker could not load the model. Enough in a row open its circuit; a failed probe
    opens it again at once."""
    try:
        if circuit_of(model).state == "half_open":
            open_circuit(model, "the model could not be loaded (probe)")
            return
        failures = int(redis_client().hincrby(state_key(model), "load_failures", 1))
        if failures >= settings.ATELIER_CIRCUIT_LOAD_FAILURES:
            open_circuit(model, f"the model could not be loaded {failures} times in a row")
    except RedisError as exc:
        log.warning("could not record a load failure of %s: %s", model, exc)


def record_job(model: str, *, succeeded: bool, jobs: int = 1) -> None:
    """``jobs`` jobs of the model (a batch) ended on a worker. A success closes a half-open (or
    open) circuit and ends a run of load failures; failures over the error rate open it."""
    try:
        client = redis_client()
        window = settings.ATELIER_CIRCUIT_WINDOW
        if succeeded:  # one round trip: a success never opens a circuit
            pipe = client.pipeline()
            pipe.hexists(state_key(model), "until")
            pipe.hset(state_key(model), "load_failures", 0)
            pipe.lpush(outcomes_key(model), *["1"] * jobs)
            pipe.ltrim(outcomes_key(model), 0, window - 1)
            if pipe.execute()[0]:  # open or half-open
                close_circuit(model)
                log.info("circuit of model %s closed: a job succeeded", model)
            return
        if circuit_of(model).state == "half_open":
            open_circuit(model, "the probe job failed")
            return
        pipe = client.pipeline()
        pipe.lpush(outcomes_key(model), *["0"] * jobs)
        pipe.ltrim(outcomes_key(model), 0, window - 1)
        pipe.lrange(outcomes_key(model), 0, window - 1)
        outcomes = pipe.execute()[-1]
        failed = outcomes.count(b"0")
        if (
            len(outcomes) >= settings.ATELIER_CIRCUIT_MIN_JOBS
            and failed / len(outcomes) >= settings.ATELIER_CIRCUIT_ERROR_RATE
        ):
            open_circuit(model, f"{failed} of its last {len(outcomes)} jobs failed")
    except RedisError as exc:
        log.warning("could not record a job of %s: %s", model, exc)


def open_circuits(models: list[str]) -> list[Circuit]:
    """The models whose circuit is not closed (for /readyz and /metrics)."""
    return [circuit for circuit in map(circuit_of, models) if circuit.state != "closed"]

"""The result cache and the circuit breakers (generations/result_cache.py, generations/circuits.py);
config/settings.py takes every name from here."""

from __future__ import annotations

from core.env import env_bool, env_float, env_int

# A request identical to a finished one (an explicit seed, the same model file and inputs) is
# answered from its stored images. A request opts out with "cache": false.
ATELIER_RESULT_CACHE = env_bool("ATELIER_RESULT_CACHE", True)
# What a cached answer costs, as a fraction of the price of rendering it (0 = free).
ATELIER_RESULT_CACHE_CHARGE = env_float("ATELIER_RESULT_CACHE_CHARGE", 0.0)

# A model's circuit opens after this many model-load failures in a row ...
ATELIER_CIRCUIT_LOAD_FAILURES = env_int("ATELIER_CIRCUIT_LOAD_FAILURES", 3)
# ... or when this share of its last ATELIER_CIRCUIT_WINDOW jobs failed on the worker's side
# (once at least ATELIER_CIRCUIT_MIN_JOBS of them ended).
ATELIER_CIRCUIT_ERROR_RATE = env_float("ATELIER_CIRCUIT_ERROR_RATE", 0.5)
ATELIER_CIRCUIT_WINDOW = env_int("ATELIER_CIRCUIT_WINDOW", 20)
ATELIER_CIRCUIT_MIN_JOBS = env_int("ATELIER_CIRCUIT_MIN_JOBS", 10)
# A pool without a live worker for this many seconds is reported: its queued jobs say
# "waiting_for_worker" (no ETA), new submissions too, and /readyz is degraded.
ATELIER_WORKERLESS_SECONDS = env_int("ATELIER_WORKERLESS_SECONDS", 30)
# Seconds an open circuit refuses submissions before it lets one through as a probe (half-open).
ATELIER_CIRCUIT_OPEN_SECONDS = env_int("ATELIER_CIRCUIT_OPEN_SECONDS", 60)
# A priority-lane job queued this many seconds while every worker of its pool runs free or relax
# jobs stops one of those at its next step (generations/preemption.py); 0 turns preemption off.
ATELIER_PREEMPT_AFTER = env_float("ATELIER_PREEMPT_AFTER", 30.0)
# Seconds a preempted job's saved latents and sampler state are kept in Redis for its resumption.
ATELIER_PREEMPT_STATE_TTL = env_int("ATELIER_PREEMPT_STATE_TTL", 24 * 3600)

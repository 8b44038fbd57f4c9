"""The name of an RQ queue: ``gen.<pool>.<lane>``, built and read here only.

No imports: the settings module builds its RQ queue table with it before Django is set up.
"""

from __future__ import annotations

PREFIX = "gen"


def queue_name(pool: str, lane: str) -> str:
    return f"{PREFIX}.{pool}.{lane}"


def pool_of(name: str) -> str:
    return name.split(".")[1]


def lane_of(name: str) -> str:
    return name.split(".")[2]

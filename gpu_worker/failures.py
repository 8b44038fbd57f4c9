"""How a job can fail in the worker: with a code from the catalogue, or transiently."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError

from core.errors import CATALOGUE

# Errors that another try may not hit: a broken connection. (Out-of-memory has its own ladder.)
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    ConnectionError,
)


class GenerationFailed(Exception):
    def __init__(self, code: str, message: str | None = None):
        self.code = code
        self.message = message or CATALOGUE[code][1]
        super().__init__(self.message)

"""One JSON object per log line, with the request id and the generation id where there is one."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from core.context import request_id

# Extra attributes copied from a record into its JSON line when a caller passes them.
FIELDS: tuple[str, ...] = (
    "request_id",
    "generation_id",
    "phase",
    "route",
    "status",
    "ms",
    "user_id",
    "worker",
    "seconds",
    "batch_size",
    "code",
    "pool",
    "model",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if "request_id" not in line and (current := request_id.get()) is not None:
            line["request_id"] = current
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)

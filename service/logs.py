"""Structured logging: one JSON object per line on stderr.

Call sites log a short event name as the message and put the facts in `extra`
(`log.info("poll.completed", extra={"task_id": ..., "request_id": ...})`). Secrets are never
passed to a logger; `SecretStr` values would print as '**********' anyway.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from service.domain.redaction import redact_urls

# Attributes every LogRecord has; anything else on a record came from `extra`.
_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["exc"] = self.formatException(record.exc_info)
        # A URL's path and query may hold a token (the callback route's, a receiver's): only
        # its scheme, host and port reach a log, whatever field or traceback carries it.
        return redact_urls(json.dumps(entry, default=str, ensure_ascii=False))


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # A library's warnings.warn (Celery's "running as root", say) becomes a JSON line too.
    logging.captureWarnings(True)
    # Libraries that log request lines or connection chatter at INFO stay at WARNING.
    for noisy in ("httpx", "httpcore", "uvicorn.access", "celery.worker.strategy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class OncePerInterval(logging.Filter):
    """Lets one record through per `interval_s`: a library retrying a dependency that is down
    logs the same failure several times a second, which buries everything else."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        self._quiet_until = -math.inf

    def filter(self, record: logging.LogRecord) -> bool:
        if self._clock() < self._quiet_until:
            return False
        self.hold()
        return True

    def hold(self) -> None:
        """Keep quiet for an interval from now (the failure was just reported another way)."""
        self._quiet_until = self._clock() + self._interval_s

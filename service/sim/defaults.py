"""The simulator's documented defaults, in a module light enough for `phonebridge --help`."""

from __future__ import annotations

DEFAULT_PORT = 8099
DEFAULT_API_ID = "sim-api-id"
DEFAULT_API_SECRET = "sim-api-secret"  # noqa: S105 - the simulator's documented default
DEFAULT_TASK_TTL_S = 86400.0
LISTENING_PREFIX = "upstream-sim listening on "

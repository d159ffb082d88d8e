"""py-spy profiles of a server process while a bench round runs, read back as the share of the
process's CPU samples that each layer of a request took (issue 28: where `POST /v1/tasks` spends
its time, beside the bare endpoint it is held against).

A sample is charged to the innermost frame that belongs to a layer: a stack that ends in psycopg
under the route counts as "database driver", one that ends in the route's own lines as "route".
Frames of asyncio, contextlib and the like belong to no layer (they are charged to the frame that
called them); a stack with no layered frame at all is the event loop's own work.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PY_SPY = str(REPO / ".venv" / "bin" / "py-spy")
RATE_HZ = 250

# (layer, pattern searched in "function (file:line)"), the first match wins: more specific first.
LAYERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (layer, re.compile(pattern))
    for layer, pattern in (
        ("logging", r"\(logging/|\(service/logs\.py"),
        ("metrics", r"\(prometheus_client/|\(service/observability/"),
        ("rate-limit headers", r"^RateLimitHeaders\..*\(service/api/client_limits\.py"),
        ("client limits, Redis", r"\(service/api/(client_limits|signins)\.py|\(redis/"),
        ("pending room", r"^(pending_room|_reserve_pending_room) "),
        ("auth, key cache, key use", r"\(service/api/(auth|keycache|keyusage)\.py|features/keys"),
        ("middleware (body limit, HEAD, portal)", r"\(service/api/(body_limit|methods|portal/)"),
        ("body read, validation", r"\(service/api/bodies|\(service/domain/(intake|jsontext)"),
        ("database (pool, psycopg, asyncpg, store)", r"\((psycopg|asyncpg|service/store/)"),
        ("database (pool, psycopg, asyncpg, store)", r"\(service/api/resources\.py"),
        ("response (task body, JSON)", r"\(service/api/responses|^(task_body|_nested) |\(json/"),
        ("errors", r"\(service/api/errors\.py"),
        ("route (register_task)", r"\(service/(api|features)/tasks\.py|\(bare_intake\.py"),
        ("pydantic", r"\(pydantic"),
        ("FastAPI, Starlette", r"\((fastapi|starlette)/"),
        ("HTTP server (uvicorn, httptools)", r"\((uvicorn|httptools)/|\(service/api/protocol"),
    )
)
EVENT_LOOP = "event loop, asyncio, other"
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*):\d+\)$")


def record(pid: int, output: Path) -> subprocess.Popen[Any]:
    """py-spy sampling `pid` into `output` (collapsed stacks: one line per stack and its count)
    until `stop`. Non-blocking: the process is never paused."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            PY_SPY,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            str(RATE_HZ),
            "--nonblocking",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(profiler: subprocess.Popen[Any]) -> None:
    profiler.send_signal(signal.SIGINT)
    profiler.wait(timeout=60)


def layer_of(stack: list[str]) -> str:
    """The layer a sample is charged to: that of its innermost frame that has one."""
    for frame in reversed(stack):
        for layer, pattern in LAYERS:
            if pattern.search(frame):
                return layer
    return EVENT_LOOP


def layer_shares(collapsed: Path) -> dict[str, float]:
    """Each layer's share of the samples in a collapsed-stack file, largest first."""
    samples: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if _FRAME.match(f)]
        samples[layer_of(frames)] += int(count)
    total = sum(samples.values())
    if total == 0:
        return {}
    return {layer: n / total for layer, n in samples.most_common()}

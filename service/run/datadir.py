"""What `up` and `demo` keep in PHONEBRIDGE_DATA_DIR beside the embedded servers' data: the lock
one of them holds while it runs, and the URLs of the embedded servers it last started.

Other commands run on the same data directory (`phonebridge api-key create` in a second terminal)
read those URLs while the lock is held, so they need no `export`; a restart of `up` reuses the
same ports when they are free, so an `export` line copied earlier keeps working too. Kept free of
heavy imports: every CLI command may look here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from service.config import ENV_PREFIX
from service.run.supervisor import SupervisorFailed

LOCK_FILE_NAME = "up.lock"
SERVERS_FILE_NAME = "embedded-servers.json"
DATABASE_URL_VARIABLE = f"{ENV_PREFIX}DATABASE_URL"
REDIS_URL_VARIABLE = f"{ENV_PREFIX}REDIS_URL"


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold DATA_DIR for this process: two `up`s must not share embedded servers' files. The
    kernel drops the lock when the process dies, so a crash leaves no stale lock behind."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE_NAME
    with path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise SupervisorFailed(
                f"{data_dir} is in use by another `phonebridge up` (pid {holder})"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def lock_holder(data_dir: Path) -> str | None:
    """The pid of the `up` or `demo` holding DATA_DIR now, or None when none does."""
    try:
        descriptor = os.open(data_dir / LOCK_FILE_NAME, os.O_RDONLY)
    except OSError:
        return None
    with os.fdopen(descriptor) as lock:
        try:
            # Shared and released at once: a holder's exclusive lock makes it fail.
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return lock.read().strip() or "unknown"
        fcntl.flock(lock, fcntl.LOCK_UN)
    return None


def record_embedded_servers(data_dir: Path, urls: Mapping[str, str]) -> None:
    """Remember the URLs of the embedded servers just started (variable name -> URL)."""
    path = data_dir / SERVERS_FILE_NAME
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(dict(urls), indent=2) + "\n")
    temporary.replace(path)


def recorded_embedded_servers(data_dir: Path) -> dict[str, str]:
    """The URLs of the embedded servers last started on DATA_DIR (running or not)."""
    try:
        recorded = json.loads((data_dir / SERVERS_FILE_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(recorded, dict):
        return {}
    return {
        name: url
        for name, url in recorded.items()
        if name in (DATABASE_URL_VARIABLE, REDIS_URL_VARIABLE) and isinstance(url, str)
    }


def recorded_port(data_dir: Path, variable: str) -> int | None:
    """The port the embedded server behind `variable` had last time, to reuse when free."""
    url = recorded_embedded_servers(data_dir).get(variable)
    if url is None:
        return None
    try:
        return urlsplit(url).port
    except ValueError:
        return None


@dataclass(frozen=True)
class RunningServers:
    """The embedded servers of an `up` or `demo` running on a data directory."""

    pid: str
    urls: Mapping[str, str]


def running_servers(data_dir: Path) -> RunningServers | None:
    """The embedded servers of the `up` or `demo` holding DATA_DIR, if one does."""
    pid = lock_holder(data_dir)
    if pid is None:
        return None
    urls = recorded_embedded_servers(data_dir)
    return RunningServers(pid, urls) if urls else None

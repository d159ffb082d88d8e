"""`phonebridge check-file`'s rules, without I/O: the Idempotency-Key of a file, what the progress
line says, when a job is over or waits to be started, what to print when the API refuses, and
the exit codes.

The command itself (service/client/check_file.py) only sends HTTP and draws; everything it
decides is here.

Exit codes (README, "Check a whole file from the command line"):

| code | meaning |
|---|---|
| 0 | the job completed and its results CSV was written |
| 1 | the API answered something unexpected, or could not be reached |
| 2 | the command line was wrong (argparse's own code) |
| 3 | no API key, or the API refused it (401) |
| 4 | the API refused the file (413, 422: its reason, or every line's) or has no such job (404) |
| 5 | the job was cancelled: the results of what it had submitted were written |
| 130 | Ctrl-C: the job keeps running; the command says how to resume waiting |
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

IDEMPOTENCY_KEY_PREFIX = "check-file-"
# How many of a refusal's per-line reasons are printed under its one line.
REFUSAL_LINES_SHOWN = 10


class ExitCode(IntEnum):
    RESULTS_WRITTEN = 0
    FAILED = 1
    USAGE = 2
    UNAUTHENTICATED = 3
    REFUSED = 4
    CANCELLED = 5
    INTERRUPTED = 130


def exit_code_for_status(status: int) -> ExitCode:
    """The exit code of a command that stops on an API answer with this HTTP status."""
    if status == 401:
        return ExitCode.UNAUTHENTICATED
    if status in (404, 413, 422):
        return ExitCode.REFUSED
    return ExitCode.FAILED


def idempotency_key(chunks: Iterable[bytes], query: Mapping[str, str]) -> str:
    """The Idempotency-Key of a create: a digest of everything the request sends (the file's
    bytes and its query parameters), so the same file sent again finds the job it made, and a
    changed file or option makes a new one (never the API's 422 for a reused key)."""
    digest = hashlib.sha256()
    # JSON escapes line breaks: the options' line cannot be mistaken for the file's start.
    digest.update(json.dumps(sorted(query.items())).encode() + b"\n")
    for chunk in chunks:
        digest.update(chunk)
    return IDEMPOTENCY_KEY_PREFIX + digest.hexdigest()


@dataclass(frozen=True, slots=True)
class JobProgress:
    """The parts of a job (as `GET /v1/check-jobs/{id}` shows it) that the progress shows."""

    job_id: str
    state: str
    paused_reason: str | None
    items: int
    rejected: int
    duplicates: int
    cached: int
    to_submit: int
    submitted: int
    pending: int
    completed: int
    failed: int
    expired: int

    @classmethod
    def of(cls, job: Mapping[str, Any]) -> JobProgress:
        counts: Mapping[str, Any] = job.get("counts") or {}

        def count(name: str) -> int:
            return int(counts.get(name) or 0)

        return cls(
            job_id=str(job["id"]),
            state=str(job["state"]),
            paused_reason=job.get("paused_reason"),
            items=count("items"),
            rejected=count("rejected"),
            duplicates=count("duplicates"),
            cached=count("cached"),
            to_submit=count("to_submit"),
            submitted=count("submitted"),
            pending=count("pending"),
            completed=count("completed"),
            failed=count("failed"),
            expired=count("expired"),
        )

    @property
    def final(self) -> int:
        """Submitted items with their final answer: the bar's progress, out of `to_submit`."""
        return self.completed + self.failed + self.expired

    @property
    def is_over(self) -> bool:
        """Its results are final: completed, or cancelled once what it had submitted finished
        (a cancelled job's submitted items still get their answers)."""
        if self.state == "completed":
            return True
        return self.state == "cancelled" and self.pending == 0

    @property
    def waits_for_start(self) -> bool:
        """A draft (made with `start=false`, to see its cost first): nothing happens until it is
        started, so the command starts it, as it starts a job it creates."""
        return self.state == "draft"

    @property
    def state_text(self) -> str:
        if self.state == "paused" and self.paused_reason:
            return f"paused ({self.paused_reason})"
        if self.state == "draft":
            return "draft (waiting for start)"
        return self.state


def progress_text(job: JobProgress) -> str:
    """One line of counts: the submitted part against `to_submit`, then what needed no call."""
    return (
        f"{job.job_id} {job.state_text}: submitted {job.submitted}/{job.to_submit}, "
        f"completed {job.completed}, failed {job.failed}, expired {job.expired}; "
        f"cached {job.cached}, duplicates {job.duplicates}, rejected {job.rejected}"
    )


def started_text(job: JobProgress) -> str:
    """What the command says when it started a draft."""
    numbers = "number" if job.to_submit == 1 else "numbers"
    return f"job {job.job_id} was a draft: started it ({job.to_submit} {numbers} to submit)"


def rejections_text(job: JobProgress, api_url: str) -> str | None:
    """Where the rejected lines are listed, when there are any."""
    if job.rejected == 0:
        return None
    lines = "line was" if job.rejected == 1 else "lines were"
    return (
        f"{job.rejected} {lines} rejected (never submitted): "
        f"GET {api_url.rstrip('/')}/v1/check-jobs/{job.job_id}/rejections lists them"
    )


def resume_command(file: str, out: str, job_id: str, url: str | None) -> str:
    """The command that waits for the same job again."""
    words = ["phonebridge", "check-file", file, "--out", out]
    if url is not None:
        words += ["--url", url]
    words += ["--job", job_id]
    return shlex.join(words)


def refusal_lines(subject: str, status: int, problem: Mapping[str, Any] | None) -> list[str]:
    """What to print when the API answers an error: one line with the status, the problem's
    code and its detail; under it, for a refusal that names lines (a job whose every line was
    rejected), one line each (at most REFUSAL_LINES_SHOWN)."""
    problem = problem or {}
    code = problem.get("code")
    label = f"{status} {code}" if code else str(status)
    errors = [e for e in problem.get("errors") or [] if isinstance(e, Mapping)]
    per_line = [
        str(e.get("message")) for e in errors if str(e.get("message", "")).startswith("line ")
    ]
    if per_line:
        others = [_described(e) for e in errors if str(e.get("message", "")) not in per_line]
        reason = "; ".join(others) or str(problem.get("title") or "refused")
    else:
        reason = str(problem.get("detail") or problem.get("title") or "no detail given")
    lines = [f"{subject} ({label}): {reason}"]
    lines += [f"  {message}" for message in per_line[:REFUSAL_LINES_SHOWN]]
    if len(per_line) > REFUSAL_LINES_SHOWN:
        lines.append(f"  ... and {len(per_line) - REFUSAL_LINES_SHOWN} more")
    return lines


def _described(error: Mapping[str, Any]) -> str:
    field = error.get("field")
    message = str(error.get("message", ""))
    return f"{field}: {message}" if field else message

"""`phonebridge check-file FILE.csv --out RESULTS.csv [--url URL] [--job ID]`: a client of the
REST API that checks a whole CSV as one check job (contract, "Lists of numbers: check jobs").

1. `POST /v1/check-jobs` with the file as `text/csv`, streamed from disk, and an
   `Idempotency-Key` derived from the file's bytes: a create retried after a lost answer, or the
   same command run again, finds the job it made instead of making another.
2. `GET /v1/check-jobs/{id}` every POLL_INTERVAL_S, drawn as a progress bar on a terminal (one
   line per change otherwise), until the job is over.
3. `GET /v1/check-jobs/{id}/results` with `Accept: text/csv`, streamed into a temporary file
   beside `--out` and renamed onto it, so `--out` is never a half-written file.

A draft (a job made with `start=false`, named with `--job`) is started first, as a job the
command creates is. Ctrl-C stops waiting, not the job: the command prints how to wait again
(`--job ID`). Exit codes and every decision are in service/domain/check_file.py; this module
only sends HTTP and draws.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

import httpx

from service.client.options import DEFAULT_URL
from service.domain.check_file import (
    ExitCode,
    JobProgress,
    exit_code_for_status,
    idempotency_key,
    progress_text,
    refusal_lines,
    rejections_text,
    resume_command,
    started_text,
)

API_KEY_VARIABLE = "PHONEBRIDGE_API_KEY"
PROMPT = "phonebridge check-file"
# A job's counts change every second at most in a way worth redrawing; one GET a second is
# nothing next to the job's own work.
POLL_INTERVAL_S = 1.0
# Creating a 100,000-item job takes seconds (bench/jobs.py); reading the results streams.
HTTP_TIMEOUT = httpx.Timeout(10.0, read=120.0)
# A create that may not have reached the API is sent again, with the same Idempotency-Key.
CREATE_ATTEMPTS = 3
# While waiting, an API that is down (restarting, a network blip) is waited for this long.
UNREACHABLE_PATIENCE_S = 300.0
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class CheckFile:
    """What the command line asked for. `url` is None when --url was not given."""

    file: Path
    out: Path
    url: str | None
    job_id: str | None

    @property
    def api_url(self) -> str:
        return (self.url or DEFAULT_URL).rstrip("/")


class ApiAnswered(Exception):
    """The API answered an error that ends the command."""

    def __init__(self, status: int, problem: dict[str, Any] | None) -> None:
        super().__init__(status)
        self.status = status
        self.problem = problem


class JobsApi:
    """The REST calls of check jobs that the command makes."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def create(self, file: Path, query: dict[str, str], key: str) -> dict[str, Any]:
        with file.open("rb") as body:
            # A file object: httpx streams it with its Content-Length (the API refuses a body
            # over 16 MiB by its length, before reading it).
            response = self._http.post(
                "/v1/check-jobs",
                params=query,
                content=body,
                headers={"content-type": "text/csv", "idempotency-key": key},
            )
        return _json_or_raise(response, expected=201)

    def job(self, job_id: str) -> dict[str, Any]:
        return _json_or_raise(self._http.get(f"/v1/check-jobs/{job_id}"), expected=200)

    def start(self, job_id: str) -> dict[str, Any]:
        return _json_or_raise(self._http.post(f"/v1/check-jobs/{job_id}/start"), expected=200)

    def download_results(self, job_id: str, out: Path) -> None:
        """The results CSV streamed to a temporary file beside `out`, then renamed onto it."""
        out.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
        try:
            with (
                os.fdopen(handle, "wb") as partial,
                self._http.stream(
                    "GET", f"/v1/check-jobs/{job_id}/results", headers={"accept": "text/csv"}
                ) as response,
            ):
                if response.status_code != 200:
                    response.read()
                    raise ApiAnswered(response.status_code, _problem(response))
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    partial.write(chunk)
            os.replace(temporary, out)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


def _problem(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _json_or_raise(response: httpx.Response, expected: int) -> dict[str, Any]:
    if response.status_code != expected:
        raise ApiAnswered(response.status_code, _problem(response))
    body = response.json()
    if not isinstance(body, dict):
        raise ApiAnswered(response.status_code, {"detail": "the answer is not a JSON object"})
    return body


class ProgressView(Protocol):
    def show(self, job: JobProgress) -> None: ...

    def close(self) -> None: ...


class PlainProgress:
    """One line each time the counts change, for output that is not a terminal."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._last: str | None = None

    def show(self, job: JobProgress) -> None:
        text = progress_text(job)
        if text != self._last:
            print(text, file=self._out, flush=True)
            self._last = text

    def close(self) -> None:
        pass


class RichProgress:
    """A bar of the submitted items' final answers out of `to_submit`, and the counts under it."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.text import Text

        class _WithCounts(Progress):
            counts = ""

            def get_renderables(self) -> Iterator[Any]:
                yield self.make_tasks_table(self.tasks)
                yield Text(self.counts, style="dim")

        self._progress = _WithCounts(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        self._task = self._progress.add_task("creating the job", total=None)
        self._progress.start()

    def show(self, job: JobProgress) -> None:
        self._progress.counts = progress_text(job)
        self._progress.update(
            self._task,
            description=f"{job.job_id} {job.state_text}",
            completed=job.final,
            total=job.to_submit or None,
        )

    def close(self) -> None:
        self._progress.stop()


def run_check_file(
    request: CheckFile,
    api_key: str | None,
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    rich: bool | None = None,
) -> ExitCode:
    """The whole command; its exit code. `transport`, `sleep` and the streams are for tests."""

    def say_error(*lines: str) -> None:
        for line in lines:
            print(line, file=err, flush=True)

    if not api_key:
        say_error(
            f"{PROMPT}: {API_KEY_VARIABLE} is not set (create a key: phonebridge api-key create)"
        )
        return ExitCode.UNAUTHENTICATED
    if request.job_id is None and not request.file.is_file():
        say_error(f"{PROMPT}: {request.file} is not a readable file")
        return ExitCode.USAGE
    use_rich = out.isatty() if rich is None else rich
    http = httpx.Client(
        base_url=request.api_url,
        headers={"authorization": f"Bearer {api_key}"},
        timeout=HTTP_TIMEOUT,
        transport=transport,
        trust_env=False,
    )
    job_id = request.job_id
    try:
        with http:
            api = JobsApi(http)
            if job_id is None:
                job = _create(api, request, sleep, say_error)
                job_id = str(job["id"])
                # 201 whether it made the job or found the one this file made before.
                print(f"{request.file} is job {job_id}", file=out, flush=True)
            else:
                job = api.job(job_id)
            progress = JobProgress.of(job)
            if progress.waits_for_start:
                progress = _start(api, job_id, out)
            where = rejections_text(progress, request.api_url)
            if where is not None:
                print(where, file=out, flush=True)
            view: ProgressView = RichProgress() if use_rich else PlainProgress(out)
            try:
                progress = _wait(api, progress, view, sleep, say_error)
            finally:
                view.close()
            api.download_results(job_id, request.out)
    except KeyboardInterrupt:
        if job_id is None:
            say_error(
                f"{PROMPT}: interrupted; if the job was created, the same command finds it again "
                "(its Idempotency-Key is the file's digest)"
            )
        else:
            say_error(
                f"{PROMPT}: stopped waiting; job {job_id} keeps running. Wait for it again with:",
                "  " + resume_command(str(request.file), str(request.out), job_id, request.url),
            )
        return ExitCode.INTERRUPTED
    except ApiAnswered as answered:
        subject = f"{PROMPT}: {_subject(answered.status, request, job_id)}"
        say_error(*refusal_lines(subject, answered.status, answered.problem))
        return exit_code_for_status(answered.status)
    except httpx.HTTPError as error:
        say_error(
            f"{PROMPT}: the API at {request.api_url} could not be reached ({type(error).__name__})"
        )
        if job_id is not None:
            say_error(
                "  " + resume_command(str(request.file), str(request.out), job_id, request.url)
            )
        return ExitCode.FAILED
    finished = "cancelled" if progress.state == "cancelled" else "completed"
    print(
        f"job {job_id} {finished}: {progress.final} checked, {progress.cached} cached, "
        f"{progress.duplicates} duplicates, {progress.rejected} rejected; "
        f"results written to {request.out}",
        file=out,
        flush=True,
    )
    return ExitCode.CANCELLED if finished == "cancelled" else ExitCode.RESULTS_WRITTEN


def _subject(status: int, request: CheckFile, job_id: str | None) -> str:
    if status == 401:
        return f"the API refused {API_KEY_VARIABLE}"
    if job_id is None:
        return f"the API refused {request.file}"
    if status == 404:
        return f"no job {job_id} for this API key at {request.api_url}"
    return f"job {job_id}"


def _create(
    api: JobsApi,
    request: CheckFile,
    sleep: Callable[[float], None],
    say_error: Callable[..., None],
) -> dict[str, Any]:
    query = {"name": request.file.name}
    with request.file.open("rb") as file:
        key = idempotency_key(iter(lambda: file.read(CHUNK_BYTES), b""), query)
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            return api.create(request.file, query, key)
        except (httpx.TransportError, ApiAnswered) as error:
            retryable = isinstance(error, httpx.TransportError) or (
                error.status in RETRYABLE_STATUSES
            )
            if not retryable or attempt == CREATE_ATTEMPTS:
                raise
            say_error(f"{PROMPT}: creating the job failed ({_described(error)}); trying again")
            sleep(float(attempt))
    raise AssertionError("unreachable")


def _start(api: JobsApi, job_id: str, out: TextIO) -> JobProgress:
    """Start a draft; a draft that moved meanwhile (started or cancelled by someone else: 409)
    is read again as it is now."""
    try:
        progress = JobProgress.of(api.start(job_id))
    except ApiAnswered as answered:
        if answered.status != 409:
            raise
        return JobProgress.of(api.job(job_id))
    print(started_text(progress), file=out, flush=True)
    return progress


def _wait(
    api: JobsApi,
    progress: JobProgress,
    view: ProgressView,
    sleep: Callable[[float], None],
    say_error: Callable[..., None],
) -> JobProgress:
    """Read the job until it is over; an API that is down for a while is waited for."""
    failing_since: float | None = None
    while True:
        view.show(progress)
        if progress.is_over:
            return progress
        sleep(POLL_INTERVAL_S)
        try:
            progress = JobProgress.of(api.job(progress.job_id))
            failing_since = None
        except (httpx.TransportError, ApiAnswered) as error:
            if isinstance(error, ApiAnswered) and error.status not in RETRYABLE_STATUSES:
                raise
            now = time.monotonic()
            if failing_since is None:
                failing_since = now
                say_error(f"{PROMPT}: reading the job failed ({_described(error)}); retrying")
            elif now - failing_since > UNREACHABLE_PATIENCE_S:
                raise


def _described(error: Exception) -> str:
    if isinstance(error, ApiAnswered):
        return f"HTTP {error.status}"
    return type(error).__name__

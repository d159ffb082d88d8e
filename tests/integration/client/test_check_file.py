"""`phonebridge check-file`'s HTTP side (service/client/check_file.py) against a stand-in of the
check jobs API that answers as the contract says ("Lists of numbers: check jobs"), through
httpx's MockTransport: the create (streamed CSV, Idempotency-Key, retried safely), the waiting,
the results written whole, Ctrl-C, `--job`, and each refusal. tests/e2e/test_check_file.py runs
the command against a real `phonebridge up`."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.client.check_file import (
    API_KEY_VARIABLE,
    POLL_INTERVAL_S,
    CheckFile,
    run_check_file,
)
from service.domain.check_file import ExitCode

API_URL = "http://api.test"
API_KEY = "pbk_test_key"
CSV = b"phone_number,reference\r\n+52 55 1234 5678,a\r\n525512345678,b\r\nnot a number,c\r\n"
RESULTS_CSV = (
    b"line,reference,phone_number_masked,state,phone_status,verdict,cached,task_id,completed_at\r\n"
    b"1,a,52******5678,completed,ring,live,false,T-1,2026-12-09T10:00:00Z\r\n"
    b"2,b,52******5678,completed,ring,live,false,T-1,2026-12-09T10:00:00Z\r\n"
)


def problem(status: int, code: str, detail: str, **more: Any) -> httpx.Response:
    body = {"type": "about:blank", "title": code, "status": status, "detail": detail, "code": code}
    body.update(more)
    return httpx.Response(
        status, content=json.dumps(body), headers={"content-type": "application/problem+json"}
    )


@dataclass
class JobsApiStandIn:
    """Check jobs as the contract describes them, one job that finishes after `polls_to_finish`
    reads. Every request is recorded."""

    polls_to_finish: int = 2
    final_state: str = "completed"
    pending_after_cancel: int = 0
    # A draft (made with start=false) until its start; `moved_meanwhile`: its start answers
    # 409, as when someone else started it first.
    draft: bool = False
    moved_meanwhile: bool = False
    requests: list[httpx.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    jobs_by_key: dict[str, str] = field(default_factory=dict)
    reads: int = 0
    # A hook per call name that may answer instead ("create", "job", "results").
    instead: dict[str, Callable[[httpx.Request], httpx.Response | None]] = field(
        default_factory=dict
    )

    def job(self) -> dict[str, Any]:
        done = min(self.reads, self.polls_to_finish)
        over = done == self.polls_to_finish
        state = self.final_state if over else "running"
        if self.draft:
            state, done, over = "draft", 0, False
        pending = 2 - done if not over else 0
        if state == "cancelled" and self.pending_after_cancel:
            pending = self.pending_after_cancel
            self.pending_after_cancel -= 1
        return {
            "id": "job_1",
            "name": "list.csv",
            "state": state,
            "paused_reason": None,
            "counts": {
                "items": 3,
                "rejected": 1,
                "duplicates": 1,
                "cached": 0,
                "to_submit": 1,
                "submitted": 1,
                "pending": pending,
                "completed": 1 if over else 0,
                "failed": 0,
                "expired": 0,
                "by_verdict": {},
            },
            "estimated_finish_at": None,
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return problem(401, "UNAUTHENTICATED", "missing or invalid API key")
        name = {
            ("POST", "/v1/check-jobs"): "create",
            ("GET", "/v1/check-jobs/job_1"): "job",
            ("GET", "/v1/check-jobs/job_1/results"): "results",
            ("POST", "/v1/check-jobs/job_1/start"): "start",
        }.get((request.method, request.url.path))
        if name is None:
            return problem(404, "NOT_FOUND", "no such job")
        if name in self.instead and (answer := self.instead[name](request)) is not None:
            return answer
        if name == "create":
            self.bodies.append(request.read())
            key = request.headers["idempotency-key"]
            self.jobs_by_key.setdefault(key, "job_1")
            return httpx.Response(201, json=self.job())
        if name == "job":
            self.reads += 1
            return httpx.Response(200, json=self.job())
        if name == "start":
            if not self.draft or self.moved_meanwhile:
                self.draft = False
                return problem(409, "CONFLICT", "cannot start the job: it is not a draft")
            self.draft = False
            return httpx.Response(200, json=self.job())
        assert request.headers["accept"] == "text/csv"
        return httpx.Response(200, content=RESULTS_CSV, headers={"content-type": "text/csv"})


class Streams:
    def __init__(self) -> None:
        self.out = io.StringIO()
        self.err = io.StringIO()


@pytest.fixture
def api() -> JobsApiStandIn:
    return JobsApiStandIn()


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "list.csv"
    path.write_bytes(CSV)
    return path


def run(
    api: JobsApiStandIn,
    request: CheckFile,
    streams: Streams,
    api_key: str | None = API_KEY,
    sleep: Callable[[float], None] | None = None,
) -> ExitCode:
    return run_check_file(
        request,
        api_key,
        transport=httpx.MockTransport(api.handle),
        sleep=sleep or (lambda seconds: None),
        out=streams.out,
        err=streams.err,
        rich=False,
    )


def a_request(csv_file: Path, job_id: str | None = None) -> CheckFile:
    return CheckFile(
        file=csv_file, out=csv_file.with_name("results.csv"), url=API_URL, job_id=job_id
    )


def test_a_file_becomes_a_job_whose_results_are_written_once_it_completes(
    api: JobsApiStandIn, csv_file: Path
) -> None:
    streams = Streams()
    pauses: list[float] = []
    assert run(api, a_request(csv_file), streams, sleep=pauses.append) is ExitCode.RESULTS_WRITTEN

    create = api.requests[0]
    assert create.headers["content-type"] == "text/csv"
    assert create.headers["content-length"] == str(len(CSV))
    assert create.url.params["name"] == "list.csv"
    assert create.headers["idempotency-key"].startswith("check-file-")
    assert api.bodies == [CSV]
    assert (csv_file.with_name("results.csv")).read_bytes() == RESULTS_CSV
    assert pauses == [POLL_INTERVAL_S] * api.polls_to_finish
    output = streams.out.getvalue()
    assert f"{csv_file} is job job_1" in output
    assert (
        "1 line was rejected (never submitted): "
        f"GET {API_URL}/v1/check-jobs/job_1/rejections lists them"
    ) in output
    assert "job_1 running: submitted 1/1, completed 0" in output
    assert "job job_1 completed: 1 checked" in output
    assert streams.err.getvalue() == ""
    assert sorted(p.name for p in csv_file.parent.iterdir()) == ["list.csv", "results.csv"]


def test_the_same_file_sent_twice_carries_the_same_idempotency_key(
    api: JobsApiStandIn, csv_file: Path
) -> None:
    run(api, a_request(csv_file), Streams())
    run(api, a_request(csv_file), Streams())
    creates = [r for r in api.requests if r.method == "POST"]
    assert len({r.headers["idempotency-key"] for r in creates}) == 1
    assert len(api.jobs_by_key) == 1


def test_a_create_whose_answer_is_lost_is_sent_again_with_the_same_key(
    api: JobsApiStandIn, csv_file: Path
) -> None:
    lost = iter([True])

    def lose_the_first(request: httpx.Request) -> httpx.Response | None:
        if next(lost, False):
            api.bodies.append(request.read())
            api.jobs_by_key.setdefault(request.headers["idempotency-key"], "job_1")
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return None

    api.instead["create"] = lose_the_first
    streams = Streams()
    assert run(api, a_request(csv_file), streams) is ExitCode.RESULTS_WRITTEN
    creates = [r for r in api.requests if r.method == "POST"]
    assert len(creates) == 2
    assert creates[0].headers["idempotency-key"] == creates[1].headers["idempotency-key"]
    assert api.bodies == [CSV, CSV]
    assert len(api.jobs_by_key) == 1
    assert "creating the job failed (ReadTimeout); trying again" in streams.err.getvalue()


def test_ctrl_c_while_waiting_leaves_the_job_and_says_how_to_wait_again(
    api: JobsApiStandIn, csv_file: Path
) -> None:
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    streams = Streams()
    request = a_request(csv_file)
    assert run(api, request, streams, sleep=interrupted) is ExitCode.INTERRUPTED
    assert streams.err.getvalue().splitlines() == [
        "phonebridge check-file: stopped waiting; job job_1 keeps running. Wait for it again with:",
        f"  phonebridge check-file {csv_file} --out {request.out} --url {API_URL} --job job_1",
    ]
    assert not request.out.exists()
    assert not any(r.method == "DELETE" or "cancel" in r.url.path for r in api.requests)


def test_job_resumes_waiting_without_sending_the_file_again(
    api: JobsApiStandIn, csv_file: Path
) -> None:
    streams = Streams()
    assert run(api, a_request(csv_file, job_id="job_1"), streams) is ExitCode.RESULTS_WRITTEN
    assert not any(r.method == "POST" for r in api.requests)
    assert csv_file.with_name("results.csv").read_bytes() == RESULTS_CSV


def test_job_starts_a_draft_then_waits_for_it(api: JobsApiStandIn, csv_file: Path) -> None:
    api.draft = True
    streams = Streams()
    assert run(api, a_request(csv_file, job_id="job_1"), streams) is ExitCode.RESULTS_WRITTEN
    starts = [r for r in api.requests if r.method == "POST"]
    assert [r.url.path for r in starts] == ["/v1/check-jobs/job_1/start"]
    assert streams.out.getvalue().splitlines()[0] == (
        "job job_1 was a draft: started it (1 number to submit)"
    )
    assert csv_file.with_name("results.csv").read_bytes() == RESULTS_CSV


def test_a_draft_started_by_someone_else_meanwhile_is_waited_for(
    api: JobsApiStandIn, csv_file: Path
) -> None:
    api.draft = api.moved_meanwhile = True
    streams = Streams()
    assert run(api, a_request(csv_file, job_id="job_1"), streams) is ExitCode.RESULTS_WRITTEN
    assert "was a draft" not in streams.out.getvalue()
    assert streams.err.getvalue() == ""
    assert csv_file.with_name("results.csv").read_bytes() == RESULTS_CSV


def test_an_unknown_job_is_refused_with_exit_4(api: JobsApiStandIn, csv_file: Path) -> None:
    streams = Streams()
    assert run(api, a_request(csv_file, job_id="job_nope"), streams) is ExitCode.REFUSED
    assert streams.err.getvalue() == (
        "phonebridge check-file: no job job_nope for this API key at "
        f"{API_URL} (404 NOT_FOUND): no such job\n"
    )


def test_a_refused_api_key_is_one_line_and_exit_3(api: JobsApiStandIn, csv_file: Path) -> None:
    streams = Streams()
    assert run(api, a_request(csv_file), streams, api_key="pbk_wrong") is ExitCode.UNAUTHENTICATED
    assert streams.err.getvalue() == (
        f"phonebridge check-file: the API refused {API_KEY_VARIABLE} "
        "(401 UNAUTHENTICATED): missing or invalid API key\n"
    )


def test_no_api_key_is_said_before_any_request(api: JobsApiStandIn, csv_file: Path) -> None:
    streams = Streams()
    assert run(api, a_request(csv_file), streams, api_key=None) is ExitCode.UNAUTHENTICATED
    assert f"{API_KEY_VARIABLE} is not set" in streams.err.getvalue()
    assert api.requests == []


def test_a_file_with_no_line_to_check_lists_the_rejected_lines(
    api: JobsApiStandIn, csv_file: Path
) -> None:
    api.instead["create"] = lambda request: problem(
        422,
        "VALIDATION_FAILED",
        "items: no item can be checked: all 2 are rejected; line 1: ...; line 2: ...",
        errors=[
            {"field": "items", "message": "no item can be checked: all 2 are rejected"},
            {"field": None, "message": "line 1: phone_number: must be a number"},
            {"field": None, "message": "line 2: phone_number: must be a number"},
        ],
    )
    streams = Streams()
    assert run(api, a_request(csv_file), streams) is ExitCode.REFUSED
    assert streams.err.getvalue().splitlines() == [
        f"phonebridge check-file: the API refused {csv_file} (422 VALIDATION_FAILED): "
        "items: no item can be checked: all 2 are rejected",
        "  line 1: phone_number: must be a number",
        "  line 2: phone_number: must be a number",
    ]
    assert not csv_file.with_name("results.csv").exists()


def test_a_file_too_large_is_refused_with_the_apis_detail(
    api: JobsApiStandIn, csv_file: Path
) -> None:
    api.instead["create"] = lambda request: problem(
        413, "BODY_TOO_LARGE", "a job's body may hold at most 16 MiB"
    )
    streams = Streams()
    assert run(api, a_request(csv_file), streams) is ExitCode.REFUSED
    assert streams.err.getvalue() == (
        f"phonebridge check-file: the API refused {csv_file} (413 BODY_TOO_LARGE): "
        "a job's body may hold at most 16 MiB\n"
    )


def test_a_cancelled_job_is_waited_for_until_what_it_submitted_is_final(
    api: JobsApiStandIn, csv_file: Path
) -> None:
    api.final_state = "cancelled"
    api.pending_after_cancel = 2
    streams = Streams()
    assert run(api, a_request(csv_file), streams) is ExitCode.CANCELLED
    reads = [r for r in api.requests if r.url.path == "/v1/check-jobs/job_1"]
    assert len(reads) == api.polls_to_finish + 2
    assert "job job_1 cancelled" in streams.out.getvalue()
    assert csv_file.with_name("results.csv").read_bytes() == RESULTS_CSV


def test_an_api_down_for_a_moment_while_waiting_is_waited_for(
    api: JobsApiStandIn, csv_file: Path
) -> None:
    failures = iter([True, True])

    def briefly_down(request: httpx.Request) -> httpx.Response | None:
        if next(failures, False):
            raise httpx.ConnectError("refused", request=request)
        return None

    api.instead["job"] = briefly_down
    streams = Streams()
    assert run(api, a_request(csv_file), streams) is ExitCode.RESULTS_WRITTEN
    assert streams.err.getvalue().count("reading the job failed (ConnectError); retrying") == 1


def test_a_results_download_that_breaks_leaves_no_partial_file_and_the_old_out_untouched(
    api: JobsApiStandIn, csv_file: Path
) -> None:
    out = csv_file.with_name("results.csv")
    out.write_bytes(b"yesterday's results\n")

    class Broken(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield RESULTS_CSV[:40]
            raise httpx.ReadError("connection lost")

    api.instead["results"] = lambda request: httpx.Response(200, stream=Broken())
    streams = Streams()
    assert run(api, a_request(csv_file), streams) is ExitCode.FAILED
    assert out.read_bytes() == b"yesterday's results\n"
    assert sorted(p.name for p in csv_file.parent.iterdir()) == ["list.csv", "results.csv"]
    assert "--job job_1" in streams.err.getvalue()

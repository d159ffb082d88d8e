"""`phonebridge check-file`'s pure rules (service/domain/check_file.py): the file's
Idempotency-Key, the progress line, when a job is over, what a refusal prints, the exit codes."""

from __future__ import annotations

from typing import Any

import pytest

from service.domain.check_file import (
    IDEMPOTENCY_KEY_PREFIX,
    REFUSAL_LINES_SHOWN,
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


def a_job(**changes: Any) -> dict[str, Any]:
    """A job as `GET /v1/check-jobs/{id}` shows it (the contract's example counts)."""
    counts = {
        "items": 100000,
        "rejected": 12,
        "duplicates": 340,
        "cached": 2000,
        "to_submit": 97648,
        "submitted": 5000,
        "pending": 310,
        "completed": 4600,
        "failed": 90,
        "expired": 0,
        "by_verdict": {"live": 3000, "unreachable": 900, "dead": 600, "retry": 100},
    }
    counts.update(changes.pop("counts", {}))
    job = {
        "id": "job_abc",
        "name": "november book",
        "state": "running",
        "paused_reason": None,
        "counts": counts,
    }
    job.update(changes)
    return job


# --- the Idempotency-Key ---------------------------------------------------------------------


def test_the_same_bytes_and_options_give_the_same_key_however_they_are_chunked() -> None:
    whole = idempotency_key([b"phone_number\n+52 55 1234 5678\n"], {"name": "a.csv"})
    chunked = idempotency_key([b"phone_", b"number\n+52 55 ", b"1234 5678\n"], {"name": "a.csv"})
    assert whole == chunked


def test_another_byte_or_another_option_gives_another_key() -> None:
    key = idempotency_key([b"phone_number\n525512345678\n"], {"name": "a.csv"})
    assert idempotency_key([b"phone_number\n525512345679\n"], {"name": "a.csv"}) != key
    assert idempotency_key([b"phone_number\n525512345678\n"], {"name": "b.csv"}) != key


def test_an_option_cannot_be_mistaken_for_the_start_of_the_file() -> None:
    assert idempotency_key([b"b=c\n"], {"a": "1"}) != idempotency_key([b""], {"a": "1\nb=c"})


def test_the_key_is_printable_ascii_within_the_contracts_255_characters() -> None:
    key = idempotency_key([b"x" * 100_000], {"name": "a" * 255})
    assert key.startswith(IDEMPOTENCY_KEY_PREFIX)
    assert 1 <= len(key) <= 255
    assert all(33 <= ord(c) <= 126 for c in key)


# --- progress --------------------------------------------------------------------------------


def test_the_progress_line_shows_the_submitted_part_against_to_submit_and_what_needed_no_call() -> (
    None
):
    text = progress_text(JobProgress.of(a_job()))
    assert text == (
        "job_abc running: submitted 5000/97648, completed 4600, failed 90, expired 0; "
        "cached 2000, duplicates 340, rejected 12"
    )


def test_the_bar_counts_submitted_items_with_a_final_answer() -> None:
    job = JobProgress.of(a_job(counts={"completed": 10, "failed": 2, "expired": 1}))
    assert job.final == 13


def test_a_paused_job_says_why() -> None:
    job = JobProgress.of(a_job(state="paused", paused_reason="budget"))
    assert "job_abc paused (budget):" in progress_text(job)


def test_a_draft_says_it_waits_for_start() -> None:
    job = JobProgress.of(a_job(state="draft", counts={"submitted": 0}))
    assert "draft (waiting for start)" in progress_text(job)


@pytest.mark.parametrize(
    ("state", "waits"),
    [(state, state == "draft") for state in ("draft", "queued", "running", "paused", "completed")],
)
def test_only_a_draft_waits_to_be_started(state: str, waits: bool) -> None:
    assert JobProgress.of(a_job(state=state)).waits_for_start is waits


def test_a_started_draft_says_what_it_will_submit() -> None:
    assert started_text(JobProgress.of(a_job(state="queued"))) == (
        "job job_abc was a draft: started it (97648 numbers to submit)"
    )
    one = JobProgress.of(a_job(state="queued", counts={"to_submit": 1}))
    assert started_text(one).endswith("(1 number to submit)")


def test_missing_counts_read_as_zero() -> None:
    job = JobProgress.of({"id": "job_x", "state": "queued", "counts": {"items": 3}})
    assert (job.items, job.submitted, job.final, job.paused_reason) == (3, 0, 0, None)


@pytest.mark.parametrize(
    ("state", "pending", "over"),
    [
        ("completed", 0, True),
        ("cancelled", 0, True),
        ("cancelled", 3, False),  # what it had submitted still gets its answers
        ("running", 0, False),
        ("queued", 0, False),
        ("paused", 0, False),
        ("draft", 0, False),
    ],
)
def test_a_job_is_over_when_completed_or_cancelled_with_nothing_pending(
    state: str, pending: int, over: bool
) -> None:
    assert JobProgress.of(a_job(state=state, counts={"pending": pending})).is_over is over


def test_rejected_lines_are_counted_with_where_to_list_them() -> None:
    job = JobProgress.of(a_job())
    assert rejections_text(job, "http://127.0.0.1:8000/") == (
        "12 lines were rejected (never submitted): "
        "GET http://127.0.0.1:8000/v1/check-jobs/job_abc/rejections lists them"
    )
    one = JobProgress.of(a_job(counts={"rejected": 1}))
    assert (rejections_text(one, "http://h") or "").startswith("1 line was rejected")


def test_no_rejections_say_nothing() -> None:
    assert rejections_text(JobProgress.of(a_job(counts={"rejected": 0})), "http://h") is None


def test_the_resume_command_names_the_job_and_quotes_what_a_shell_would_split() -> None:
    assert resume_command("my list.csv", "out.csv", "job_abc", None) == (
        "phonebridge check-file 'my list.csv' --out out.csv --job job_abc"
    )
    assert resume_command("a.csv", "b.csv", "job_abc", "http://api:8000") == (
        "phonebridge check-file a.csv --out b.csv --url http://api:8000 --job job_abc"
    )


# --- refusals and exit codes -----------------------------------------------------------------


def test_a_refusal_is_one_line_with_the_status_code_and_the_apis_detail() -> None:
    problem = {
        "title": "Payload Too Large",
        "status": 413,
        "detail": "the body is over 16 MiB",
        "code": "BODY_TOO_LARGE",
    }
    assert refusal_lines("check-file: the API refused a.csv", 413, problem) == [
        "check-file: the API refused a.csv (413 BODY_TOO_LARGE): the body is over 16 MiB"
    ]


def test_a_refusal_of_every_line_lists_the_lines_under_it() -> None:
    problem = {
        "status": 422,
        "code": "VALIDATION_FAILED",
        "detail": "items: no item can be checked: all 2 are rejected; line 1: ...; line 2: ...",
        "errors": [
            {"field": "items", "message": "no item can be checked: all 2 are rejected"},
            {"field": None, "message": "line 1: phone_number: is not a number"},
            {"field": None, "message": "line 2: phone_number: too short"},
        ],
    }
    assert refusal_lines("refused a.csv", 422, problem) == [
        "refused a.csv (422 VALIDATION_FAILED): items: no item can be checked: all 2 are rejected",
        "  line 1: phone_number: is not a number",
        "  line 2: phone_number: too short",
    ]


def test_a_long_list_of_refused_lines_is_cut_with_how_many_more() -> None:
    errors = [{"field": None, "message": f"line {n}: bad"} for n in range(1, 15)]
    lines = refusal_lines("refused", 422, {"detail": "x", "errors": errors})
    assert len(lines) == 1 + REFUSAL_LINES_SHOWN + 1
    assert lines[-1] == f"  ... and {14 - REFUSAL_LINES_SHOWN} more"


def test_a_refusal_without_a_problem_body_still_says_the_status() -> None:
    assert refusal_lines("refused", 502, None) == ["refused (502): no detail given"]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, ExitCode.UNAUTHENTICATED),
        (404, ExitCode.REFUSED),
        (413, ExitCode.REFUSED),
        (422, ExitCode.REFUSED),
        (409, ExitCode.FAILED),
        (500, ExitCode.FAILED),
        (503, ExitCode.FAILED),
    ],
)
def test_each_final_answer_has_its_exit_code(status: int, code: ExitCode) -> None:
    assert exit_code_for_status(status) is code


def test_the_exit_codes_are_the_documented_numbers() -> None:
    assert {code.name: int(code) for code in ExitCode} == {
        "RESULTS_WRITTEN": 0,
        "FAILED": 1,
        "USAGE": 2,
        "UNAUTHENTICATED": 3,
        "REFUSED": 4,
        "CANCELLED": 5,
        "INTERRUPTED": 130,
    }

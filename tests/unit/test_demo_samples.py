"""The demo's samples (service/run/demo_samples.py) script the simulator to the outcome the demo
expects: the registered task_ids whatever random tag the run draws (a tag of digits alone once
made sim-invalid answer PENDING until it expired), and the submitted checks' numbers, one per
phone_status, each a valid Mexican or Colombian number written as people write them; and the
sample check job's lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.phone_numbers import DEFAULT_CHECK_COUNTRIES, PhoneNumber, parse_phone_number
from service.run.demo import sample_check_script
from service.run.demo_samples import (
    SAMPLE_JOB_DUPLICATE,
    SAMPLE_JOB_NUMBERS,
    SAMPLE_JOB_REJECTED,
    SAMPLE_STATUSES,
    expected_job_verdicts,
    sample_checks,
    sample_job_lines,
    sample_tasks,
)
from service.sim.numbers import is_valid_number
from service.sim.scripts import PHONE_STATUSES, FateKind, parse_script, script_for_task_id

FATE_OF_STATE = {"failed": FateKind.INVALID, "expired": FateKind.NEVER}


def check_samples(tag: str) -> None:
    """`tag` as the demo draws it: secrets.token_hex(3)."""
    samples = sample_tasks(tag)
    assert len({sample.task_id for sample in samples}) == len(samples)
    assert {sample.expected_state for sample in samples} == {"failed", "expired"}
    for sample in samples:
        script = script_for_task_id(sample.task_id)
        assert script is not None, sample.task_id
        assert script.fate.kind is FATE_OF_STATE[sample.expected_state], sample.task_id
        assert script.pending_s == 0
        assert script.pending_calls == 0, sample.task_id


@pytest.mark.parametrize("tag", ["977032", "000000", "abcdef", "12e4f0"])
def test_samples_script_their_expected_outcome(tag: str) -> None:
    check_samples(tag)


@given(st.text(alphabet="0123456789abcdef", min_size=6, max_size=6))
def test_samples_script_their_expected_outcome_for_any_hex_tag(tag: str) -> None:
    check_samples(tag)


def test_the_sample_checks_cover_every_phone_status_with_its_delay() -> None:
    assert {status for status, _ in SAMPLE_STATUSES} == set(PHONE_STATUSES)
    for status, ready_after_s in SAMPLE_STATUSES:
        script = parse_script(sample_check_script(status, ready_after_s))
        assert script is not None
        assert script.fate.phone_status == status
        assert script.pending_calls == 0
        assert script.pending_s == ready_after_s


def test_each_sample_check_is_its_own_valid_mexican_or_colombian_number() -> None:
    checks = sample_checks()
    assert [(status, ready) for _, _, status, ready in checks] == list(SAMPLE_STATUSES)
    numbers = [digits for _, digits, _, _ in checks]
    assert len(set(numbers)) == len(numbers)
    assert all(is_valid_number(digits) for digits in numbers)
    assert {digits[:2] for digits in numbers} == {"52", "57"}
    # Written in the forms phonebridge normalises, not as upstream is sent them.
    assert sum(written != digits for written, digits, _, _ in checks) >= len(checks) - 1


# --- the sample check job --------------------------------------------------------------------


def test_the_sample_job_has_scripted_numbers_a_duplicate_and_a_rejected_line() -> None:
    lines = sample_job_lines()
    assert len(lines) == SAMPLE_JOB_NUMBERS + 2
    scripted = [digits_of(written) for written, _, status, _ in lines if status is not None]
    assert len(scripted) == SAMPLE_JOB_NUMBERS
    assert len(set(scripted)) == len(scripted)
    assert all(is_valid_number(digits) for digits in scripted)
    # Line 1's number again, written otherwise: a duplicate, never submitted.
    assert digits_of(SAMPLE_JOB_DUPLICATE) == scripted[0]
    assert lines[-2][0] == SAMPLE_JOB_DUPLICATE
    # No phone number at all: the job rejects the line.
    rejected = parse_phone_number(SAMPLE_JOB_REJECTED, DEFAULT_CHECK_COUNTRIES)
    assert not isinstance(rejected, PhoneNumber)
    assert len({reference for _, reference, _, _ in lines}) == len(lines)


def test_the_sample_job_is_answered_after_one_to_six_seconds_with_every_phone_status() -> None:
    answered = [(status, ready) for _, _, status, ready in sample_job_lines() if status]
    assert {status for status, _ in answered} == set(PHONE_STATUSES)
    assert all(1.0 <= ready <= 6.0 for _, ready in answered)


def test_the_sample_jobs_expected_rows_count_the_duplicate_with_its_first_lines_verdict() -> None:
    expected = expected_job_verdicts()
    assert sum(expected.values()) == SAMPLE_JOB_NUMBERS + 1
    first_status = sample_job_lines()[0][2]
    assert first_status == "ring"
    assert expected == {"live": 9, "dead": 2, "unreachable": 4, "retry": 4}


def digits_of(written: str) -> str:
    number = parse_phone_number(written, DEFAULT_CHECK_COUNTRIES)
    assert isinstance(number, PhoneNumber), written
    return number.digits

"""The demo's samples script the simulator to the outcome the demo expects: the registered
task_ids whatever random tag the run draws (a tag of digits alone once made sim-invalid answer
PENDING until it expired), and the submitted checks' numbers, one per phone_status, each a valid
Mexican or Colombian number written as people write them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.run.demo import SAMPLE_STATUSES, sample_check_script, sample_checks, sample_tasks
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

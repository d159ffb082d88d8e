"""The demo's sample task ids script the simulator to the outcome the demo expects, whatever
random tag the run draws (a tag of digits alone once made sim-invalid answer PENDING until it
expired)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.run.demo import SAMPLE_STATUSES, sample_tasks
from service.sim.scripts import FateKind, script_for_task_id

FATE_OF_STATE = {
    "completed": FateKind.STATUS,
    "failed": FateKind.INVALID,
    "expired": FateKind.NEVER,
}
PENDING_CALLS = dict(SAMPLE_STATUSES)


def check_samples(tag: str) -> None:
    """`tag` as the demo draws it: secrets.token_hex(3)."""
    samples = sample_tasks(tag)
    assert len({sample.task_id for sample in samples}) == len(samples)
    for sample in samples:
        script = script_for_task_id(sample.task_id)
        assert script is not None, sample.task_id
        assert script.fate.kind is FATE_OF_STATE[sample.expected_state], sample.task_id
        assert script.pending_s == 0
        if sample.expected_phone_status is not None:
            assert script.fate.phone_status == sample.expected_phone_status
            assert script.pending_calls == PENDING_CALLS[sample.expected_phone_status]
        else:
            assert script.pending_calls == 0, sample.task_id


@pytest.mark.parametrize("tag", ["977032", "000000", "abcdef", "12e4f0"])
def test_samples_script_their_expected_outcome(tag: str) -> None:
    check_samples(tag)


@given(st.text(alphabet="0123456789abcdef", min_size=6, max_size=6))
def test_samples_script_their_expected_outcome_for_any_hex_tag(tag: str) -> None:
    check_samples(tag)

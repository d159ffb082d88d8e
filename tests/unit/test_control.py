"""The simulator's control rules (service/sim/control.py): a fault PATCH changes only what it
names and a PUT starts over; a task's script comes from its script, its fate or its id."""

from __future__ import annotations

import pytest

from service.sim.control import (
    ControlError,
    FaultsIn,
    TaskIn,
    apply_faults,
    faults_view,
    script_of,
)
from service.sim.faults import FaultMode, FaultSettings


def test_a_patch_changes_only_what_it_names_and_a_put_starts_over() -> None:
    current = apply_faults(
        FaultSettings(),
        FaultsIn(probabilities={FaultMode.INTERNAL_ERROR: 0.2}, slow_s=1.0),
        now=0.0,
        replace=True,
    )

    patched = apply_faults(current, FaultsIn(retry_after_s=3), now=0.0, replace=False)
    replaced = apply_faults(current, FaultsIn(retry_after_s=3), now=0.0, replace=True)

    assert faults_view(patched)["probabilities"] == {"internal_error": 0.2}
    assert (faults_view(patched)["slow_s"], faults_view(patched)["retry_after_s"]) == (1.0, 3)
    assert faults_view(replaced)["probabilities"] == {}


def test_a_forced_fault_ends_after_its_time_or_calls() -> None:
    forced = apply_faults(
        FaultSettings(),
        FaultsIn.model_validate({"force": {"mode": "unauthorized", "for_s": 5, "calls": 2}}),
        now=100.0,
        replace=False,
    )

    assert faults_view(forced)["force"] == {"mode": "unauthorized", "until": 105.0, "calls_left": 2}


def test_probabilities_that_add_up_past_one_are_refused() -> None:
    change = FaultsIn(probabilities={FaultMode.INTERNAL_ERROR: 0.7, FaultMode.GARBAGE: 0.6})

    with pytest.raises(ControlError):
        apply_faults(FaultSettings(), change, now=0.0, replace=True)


def test_a_task_script_comes_from_its_script_its_fate_or_its_id() -> None:
    assert script_of(TaskIn(script="ring-3-2s")).text == "ring-3-2s"
    assert script_of(TaskIn(task_id="sim-ring-3-2s-abc")).text == "ring-3-2s"
    assert script_of(TaskIn(fate="ring", pending_calls=1)).pending_calls == 1
    with pytest.raises(ControlError, match="unknown script"):
        script_of(TaskIn(script="no-such-script"))
    with pytest.raises(ControlError, match="give a script"):
        script_of(TaskIn(task_id="T-plain"))

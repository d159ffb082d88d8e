"""The simulator's pure parts: the task_id grammar, masking, fault choice, the window counter."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.sim.calls import busiest_window
from service.sim.faults import (
    FaultMode,
    FaultSettings,
    ForcedFault,
    SlidingWindowLimit,
    check_probabilities,
    draw_random_fault,
    take_forced_fault,
)
from service.sim.scripts import (
    PHONE_STATUSES,
    Fate,
    FateKind,
    TaskScript,
    mask_phone_number,
    parse_script,
    random_script,
    script_for_task_id,
)

RING = Fate(FateKind.STATUS, phone_status="ring")


@pytest.mark.parametrize(
    ("task_id", "expected"),
    [
        ("sim-ring-3", TaskScript(RING, pending_calls=3)),
        ("sim-ring", TaskScript(RING)),
        ("sim-busy-0", TaskScript(Fate(FateKind.STATUS, phone_status="busy"))),
        ("sim-ring-2s", TaskScript(RING, pending_s=2.0)),
        ("sim-ring-1.5s", TaskScript(RING, pending_s=1.5)),
        ("sim-ring-250ms", TaskScript(RING, pending_s=0.25)),
        ("sim-ring-3-250ms", TaskScript(RING, pending_calls=3, pending_s=0.25)),
        ("sim-ring-3-7f2c", TaskScript(RING, pending_calls=3)),
        ("sim-ring-3-5", TaskScript(RING, pending_calls=3)),
        ("sim-ring-3-1s-a.b:c", TaskScript(RING, pending_calls=3, pending_s=1.0)),
        ("sim-ring-tag", TaskScript(RING)),
        (
            "sim-status_weird_value-1",
            TaskScript(Fate(FateKind.STATUS, phone_status="weird_value"), pending_calls=1),
        ),
        ("sim-invalid", TaskScript(Fate(FateKind.INVALID))),
        ("sim-invalid-2", TaskScript(Fate(FateKind.INVALID), pending_calls=2)),
        ("sim-never", TaskScript(Fate(FateKind.NEVER))),
        ("sim-fault_html", TaskScript(Fate(FateKind.FAULT, fault=FaultMode.HTML))),
        (
            "sim-fault_internal_error-1",
            TaskScript(Fate(FateKind.FAULT, fault=FaultMode.INTERNAL_ERROR), pending_calls=1),
        ),
    ],
)
def test_sim_task_ids_encode_their_script(task_id: str, expected: TaskScript) -> None:
    assert script_for_task_id(task_id) == expected


@pytest.mark.parametrize("status", PHONE_STATUSES)
def test_every_phone_status_has_a_task_id_form(status: str) -> None:
    script = script_for_task_id(f"sim-{status}-2")
    assert script == TaskScript(Fate(FateKind.STATUS, phone_status=status), pending_calls=2)


@pytest.mark.parametrize(
    "task_id",
    [
        "T-123",
        "sim-",
        "sim-rings-1",
        "sim-status_-1",
        "sim-status_UPPER",
        "sim-fault_bogus",
        "ring-1",
    ],
)
def test_other_task_ids_have_no_script(task_id: str) -> None:
    assert script_for_task_id(task_id) is None


@given(
    st.sampled_from([*PHONE_STATUSES, "invalid", "never", "status_odd", "fault_empty"]),
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from([0.0, 0.5, 0.001, 2.0, 120.25, 86400.0]),
)
def test_script_text_parses_back_to_the_same_script(
    fate_token: str, calls: int, delay_s: float
) -> None:
    script = parse_script(f"{fate_token}-{calls}-{delay_s}s")
    assert script is not None
    assert parse_script(script.text) == script
    assert script_for_task_id(f"sim-{script.text}-abc123") == script


@pytest.mark.parametrize(
    ("number", "masked"),
    [("006212345678", "0062********"), ("525512345678", "5255********"), ("521", "521")],
)
def test_phone_numbers_keep_their_first_four_digits(number: str, masked: str) -> None:
    assert mask_phone_number(number) == masked


def test_random_scripts_cover_every_phone_status_reproducibly() -> None:
    assert random_script(random.Random(5)) == random_script(random.Random(5))
    rng = random.Random(1)
    seen = {random_script(rng).fate.phone_status for _ in range(500)}
    assert seen == set(PHONE_STATUSES)


def test_forced_fault_lasts_for_its_calls() -> None:
    settings = FaultSettings(forced=ForcedFault(FaultMode.KEY_EXPIRED, calls_left=2))
    answers = [take_forced_fault(settings, now=100.0) for _ in range(3)]
    assert answers == [FaultMode.KEY_EXPIRED, FaultMode.KEY_EXPIRED, None]
    assert settings.forced is None


def test_forced_fault_lasts_until_its_end_time() -> None:
    settings = FaultSettings(forced=ForcedFault(FaultMode.OUT_OF_QUOTA, until=105.0))
    assert take_forced_fault(settings, now=104.999) is FaultMode.OUT_OF_QUOTA
    assert take_forced_fault(settings, now=105.0) is None
    assert take_forced_fault(settings, now=104.0) is None  # switched off for good


@pytest.mark.parametrize(
    ("draw", "expected"),
    [
        (0.0, FaultMode.HTML),
        (0.099, FaultMode.HTML),
        (0.1, FaultMode.EMPTY),
        (0.299, FaultMode.EMPTY),
        (0.35, None),
    ],
)
def test_random_fault_draw_falls_into_consecutive_probability_bands(
    draw: float, expected: FaultMode | None
) -> None:
    settings = FaultSettings(probabilities={FaultMode.HTML: 0.1, FaultMode.EMPTY: 0.2})
    assert draw_random_fault(settings, lambda: draw) is expected


@pytest.mark.parametrize(
    "probabilities",
    [{FaultMode.HTML: 1.5}, {FaultMode.HTML: -0.1}, {FaultMode.HTML: 0.6, FaultMode.EMPTY: 0.5}],
)
def test_impossible_fault_probabilities_are_refused(probabilities: dict[FaultMode, float]) -> None:
    with pytest.raises(ValueError, match="probabilit"):
        check_probabilities(probabilities)


def test_sliding_window_limit_admits_at_most_limit_calls_per_window() -> None:
    limit = SlidingWindowLimit(3, window_s=1.0)
    assert [limit.admit(t) for t in (0.0, 0.1, 0.2, 0.3, 0.99)] == [True, True, True, False, False]
    # The call at 0.0 leaves the window at 1.0, which frees one place.
    assert [limit.admit(t) for t in (1.0, 1.05)] == [True, False]


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ([], (0, None)),
        ([5.0], (1, 5.0)),
        ([0.0, 0.5, 0.99, 1.0, 1.2], (4, 0.5)),
        ([0.0, 0.5, 0.99, 1.0, 2.0], (3, 0.0)),
        ([0.0, 1.0, 1.1, 1.2, 1.9, 2.0], (4, 1.0)),
        ([3.0, 1.0, 2.0, 1.5], (2, 1.0)),
    ],
)
def test_busiest_window_counts_calls_in_any_half_open_window(
    times: list[float], expected: tuple[int, float | None]
) -> None:
    assert busiest_window(times, 1.0) == expected


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=60))
def test_busiest_window_matches_a_brute_force_count(times: list[float]) -> None:
    brute = max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)
    assert busiest_window(times, 1.0)[0] == brute

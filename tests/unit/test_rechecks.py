"""The `recheck` object's rules (service/domain/rechecks.py) and when an answer calls for a
re-check: every rule named in the error, the bounds exactly, and the due time over every policy,
verdict and count of re-checks made."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.intake import FieldError
from service.domain.rechecks import (
    AFTER_S_MAX,
    AFTER_S_MIN,
    DEFAULT_AFTER_S,
    DEFAULT_MAX,
    MAX_MAX,
    MAX_MIN,
    RecheckPolicy,
    check_recheck,
    recheck_due_at,
    waiting_deadline,
)
from service.domain.verdicts import Verdict

NOW = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
ALL_VERDICT_SETS = [
    frozenset(combination)
    for size in range(1, len(Verdict) + 1)
    for combination in itertools.combinations(Verdict, size)
]


def checked(value: object, **bounds: int) -> tuple[RecheckPolicy | None, list[FieldError]]:
    errors: list[FieldError] = []
    return check_recheck(value, errors, **bounds), errors  # type: ignore[arg-type]


def test_no_recheck_is_no_policy_and_no_error() -> None:
    assert checked(None) == (None, [])


def test_an_empty_object_asks_for_the_contracts_example() -> None:
    policy, errors = checked({})
    assert errors == []
    assert policy == RecheckPolicy(frozenset({Verdict.RETRY}), DEFAULT_AFTER_S, DEFAULT_MAX)
    assert policy.as_json() == {"verdicts": ["retry"], "after_s": 600, "max": 1}


def test_the_contracts_example_is_accepted_as_given() -> None:
    policy, errors = checked({"verdicts": ["retry", "unreachable"], "after_s": 900, "max": 3})
    assert errors == []
    assert policy == RecheckPolicy(frozenset({Verdict.RETRY, Verdict.UNREACHABLE}), 900, 3)


def test_verdicts_are_stored_in_the_contracts_order_whatever_the_order_given() -> None:
    policy, _ = checked({"verdicts": ["retry", "live", "retry"]})
    assert policy is not None
    assert policy.as_json()["verdicts"] == ["live", "retry"]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("retry", "recheck"),
        ([{"verdicts": ["retry"]}], "recheck"),
        ({"verdict": ["retry"]}, "recheck.verdict"),
        ({"verdicts": []}, "recheck.verdicts"),
        ({"verdicts": "retry"}, "recheck.verdicts"),
        ({"verdicts": ["maybe"]}, "recheck.verdicts"),
        ({"verdicts": ["RETRY"]}, "recheck.verdicts"),
        ({"verdicts": [1]}, "recheck.verdicts"),
        ({"after_s": AFTER_S_MIN - 1}, "recheck.after_s"),
        ({"after_s": AFTER_S_MAX + 1}, "recheck.after_s"),
        ({"after_s": 600.5}, "recheck.after_s"),
        ({"after_s": "600"}, "recheck.after_s"),
        ({"after_s": True}, "recheck.after_s"),
        ({"after_s": None}, "recheck.after_s"),
        ({"max": MAX_MIN - 1}, "recheck.max"),
        ({"max": MAX_MAX + 1}, "recheck.max"),
        ({"max": False}, "recheck.max"),
    ],
)
def test_each_broken_rule_names_its_field(value: object, field: str) -> None:
    policy, errors = checked(value)
    assert policy is None
    assert field in {error.field for error in errors}


def test_every_broken_rule_is_reported_at_once() -> None:
    _, errors = checked({"verdicts": [], "after_s": 1, "max": 9, "when": "later"})
    assert {error.field for error in errors} == {
        "recheck.verdicts",
        "recheck.after_s",
        "recheck.max",
        "recheck.when",
    }
    assert all(error.message for error in errors)


def test_an_unknown_verdict_is_named_in_the_message() -> None:
    _, errors = checked({"verdicts": ["retry", "maybe"]})
    (error,) = errors
    assert "'maybe'" in error.message
    assert "live, unreachable, dead, retry" in error.message


def test_a_whole_float_is_a_whole_number() -> None:
    policy, errors = checked({"after_s": 600.0, "max": 2.0})
    assert errors == []
    assert policy == RecheckPolicy(frozenset({Verdict.RETRY}), 600, 2)


def test_the_deployment_may_lower_the_smallest_after_s() -> None:
    assert checked({"after_s": 1})[0] is None
    assert checked({"after_s": 1}, min_after_s=1)[0] == RecheckPolicy(after_s=1)
    assert checked({"after_s": 0}, min_after_s=1)[0] is None


def test_the_field_name_can_be_another_place_in_a_body() -> None:
    errors: list[FieldError] = []
    check_recheck({"max": 0}, errors, field="items[3].recheck")
    assert [error.field for error in errors] == ["items[3].recheck.max"]


@given(
    verdicts=st.sampled_from(ALL_VERDICT_SETS),
    after_s=st.integers(AFTER_S_MIN, AFTER_S_MAX),
    max_rechecks=st.integers(MAX_MIN, MAX_MAX),
)
def test_every_policy_within_bounds_is_accepted_and_round_trips(
    verdicts: frozenset[Verdict], after_s: int, max_rechecks: int
) -> None:
    given_value = {
        "verdicts": sorted(verdict.value for verdict in verdicts),
        "after_s": after_s,
        "max": max_rechecks,
    }
    policy, errors = checked(given_value)
    assert errors == []
    assert policy == RecheckPolicy(verdicts, after_s, max_rechecks)
    assert RecheckPolicy.from_json(policy.as_json()) == policy
    assert checked(policy.as_json())[0] == policy


@given(
    after_s=st.integers().filter(lambda n: not AFTER_S_MIN <= n <= AFTER_S_MAX),
    max_rechecks=st.integers().filter(lambda n: not MAX_MIN <= n <= MAX_MAX),
)
def test_every_number_out_of_bounds_is_refused(after_s: int, max_rechecks: int) -> None:
    assert "recheck.after_s" in {e.field for e in checked({"after_s": after_s})[1]}
    assert "recheck.max" in {e.field for e in checked({"max": max_rechecks})[1]}


@pytest.mark.parametrize("verdicts", ALL_VERDICT_SETS, ids=lambda v: "+".join(sorted(v)))
@pytest.mark.parametrize("max_rechecks", range(MAX_MIN, MAX_MAX + 1))
def test_a_recheck_is_due_exactly_when_the_verdict_is_named_and_room_is_left(
    verdicts: frozenset[Verdict], max_rechecks: int
) -> None:
    policy = RecheckPolicy(verdicts, 600, max_rechecks)
    for verdict, done in itertools.product([*Verdict, None], range(MAX_MAX + 2)):
        due = recheck_due_at(policy, verdict, done, NOW)
        if verdict in verdicts and done < max_rechecks:
            assert due == NOW + timedelta(seconds=600), (verdict, done)
        else:
            assert due is None, (verdict, done)


@pytest.mark.parametrize("verdict", [*Verdict, None])
def test_without_a_policy_no_answer_is_rechecked(verdict: Verdict | None) -> None:
    assert recheck_due_at(None, verdict, 0, NOW) is None


def test_an_unknown_status_is_never_rechecked() -> None:
    every = RecheckPolicy(frozenset(Verdict), 60, 5)
    assert recheck_due_at(every, None, 0, NOW) is None


def test_a_waiting_task_has_a_checks_validity_to_be_submitted() -> None:
    assert waiting_deadline(NOW, 86_400) == NOW + timedelta(days=1)

"""Reading a check job's request (service.domain.job_input): the JSON body, its limits, the items
that cannot be checked, and the refusals that name the line or field (the CSV upload, read by the
same rules, in test_job_csv.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.checks import validate_check
from service.domain.intake import METADATA_MAX_BYTES, FieldError, Rejection
from service.domain.job_input import (
    JOB_ITEMS_MAX,
    REFERENCE_MAX_LENGTH,
    REJECTIONS_SHOWN,
    ItemRejection,
    JobItem,
    JobOptions,
    JobRequest,
    job_from_json,
)
from service.domain.phone_numbers import DEFAULT_CHECK_COUNTRIES
from service.domain.rechecks import RecheckPolicy
from service.domain.verdicts import Verdict
from tests.support.job_requests import (
    TEST_RULE,
    accepted,
    from_json,
    number_rule,
    refused,
)


def rule_of_checks(text: str) -> str | FieldError:
    """The rule POST /v1/checks applies today, as a NumberReader."""
    checked = validate_check({"phone_number": text}, DEFAULT_CHECK_COUNTRIES)
    return checked.errors[0] if isinstance(checked, Rejection) else checked.number.digits


def items(*phone_numbers: str) -> dict[str, Any]:
    return {"items": [{"phone_number": number} for number in phone_numbers]}


# -- JSON ------------------------------------------------------------------------------------


def test_a_json_job_takes_its_items_in_order_with_lines_from_one_and_default_options() -> None:
    job = accepted(from_json(items("+525512345678", "525512340000")))
    assert job == JobRequest(
        options=JobOptions(name=None, max_age_s=0, recheck=None, start=True),
        items=(
            JobItem(1, "525512345678", None, "{}"),
            JobItem(2, "525512340000", None, "{}"),
        ),
        rejections=(),
    )
    assert job.item_count == 2


def test_a_json_job_keeps_every_option_and_each_items_reference_and_metadata() -> None:
    job = accepted(
        from_json(
            {
                "items": [
                    {"phone_number": "525512345678", "reference": "loan-17", "metadata": {"b": 1}}
                ],
                "name": "november book",
                "max_age_s": 86_400,
                "recheck": {"verdicts": ["retry"], "after_s": 900, "max": 2},
                "start": False,
            }
        )
    )
    assert job.options == JobOptions(
        name="november book",
        max_age_s=86_400,
        recheck=RecheckPolicy(frozenset({Verdict.RETRY}), 900, 2),
        start=False,
    )
    assert job.items == (JobItem(1, "525512345678", "loan-17", '{"b":1}'),)


@pytest.mark.parametrize("option", ["name", "max_age_s", "recheck", "start"])
def test_a_null_option_means_its_default(option: str) -> None:
    job = accepted(from_json({**items("525512345678"), option: None}))
    assert job.options == JobOptions()


@pytest.mark.parametrize("body", [[], "items", None, 7, [{"phone_number": "525512345678"}]])
def test_a_body_that_is_not_an_object_is_refused_with_the_expected_shape(body: object) -> None:
    assert refused(from_json(body)) == [
        FieldError(
            None,
            'the request body must be a JSON object {"items": [{phone_number, reference?, '
            "metadata?}, ...]}",
        )
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "is required"),
        ({"items": None}, "is required"),
        ({"items": {"phone_number": "525512345678"}}, "must be an array"),
        ({"items": "525512345678"}, "must be an array"),
        ({"items": []}, "must hold at least one item"),
    ],
)
def test_items_must_be_a_non_empty_array(body: dict[str, Any], message: str) -> None:
    errors = refused(from_json(body))
    assert [error.field for error in errors] == ["items"]
    assert message in errors[0].message


def test_a_json_job_of_the_most_items_is_taken_and_one_more_is_refused_by_its_count() -> None:
    entry = {"phone_number": "525512345678"}
    assert accepted(from_json({"items": [entry] * JOB_ITEMS_MAX})).item_count == 100_000
    assert refused(from_json({"items": [entry] * (JOB_ITEMS_MAX + 1)})) == [
        FieldError("items", "holds 100001 items; a job may hold at most 100000")
    ]


def test_the_count_is_checked_before_any_item() -> None:
    errors = refused(from_json({"items": [3] * (JOB_ITEMS_MAX + 1)}))
    assert [error.field for error in errors] == ["items"]


def test_an_unknown_field_of_the_body_is_refused_by_name() -> None:
    assert refused(from_json({**items("525512345678"), "max_age": 60})) == [
        FieldError("max_age", "unknown field (allowed: items, name, max_age_s, recheck, start)")
    ]


def test_every_broken_rule_of_the_body_is_reported_at_once() -> None:
    errors = refused(
        from_json(
            {
                "items": [],
                "name": "",
                "max_age_s": -1,
                "recheck": {"verdicts": []},
                "start": "yes",
                "extra": 1,
            }
        )
    )
    assert [error.field for error in errors] == [
        "extra",
        "items",
        "name",
        "max_age_s",
        "recheck.verdicts",
        "start",
    ]


@pytest.mark.parametrize("seconds", [-1, 30 * 24 * 3600 + 1, 1.5, "60"])
def test_max_age_out_of_range_refuses_the_job(seconds: object) -> None:
    errors = refused(from_json({**items("525512345678"), "max_age_s": seconds}))
    assert [error.field for error in errors] == ["max_age_s"]


@pytest.mark.parametrize("start", ["true", 1, 0, []])
def test_start_must_be_a_boolean(start: object) -> None:
    errors = refused(from_json({**items("525512345678"), "start": start}))
    assert [error.field for error in errors] == ["start"]


@pytest.mark.parametrize(
    ("name", "accepted_"),
    [("a", True), ("x" * 255, True), ("", False), ("x" * 256, False), ("a\tb", False), (5, False)],
)
def test_a_job_name_is_one_to_255_characters_without_control_characters(
    name: object, accepted_: bool
) -> None:
    outcome = from_json({**items("525512345678"), "name": name})
    if accepted_:
        assert accepted(outcome).options.name == name
    else:
        assert [error.field for error in refused(outcome)] == ["name"]


def test_an_item_that_cannot_be_checked_is_a_rejection_by_line_and_the_rest_run() -> None:
    job = accepted(
        from_json(
            {
                "items": [
                    {"phone_number": "525512345678"},
                    {"phone_number": "12ab", "reference": "r2"},
                    {"phone_number": "525512340000"},
                ]
            }
        )
    )
    assert [item.line for item in job.items] == [1, 3]
    assert job.rejections == (ItemRejection(2, "r2", f"phone_number: {TEST_RULE}"),)
    assert job.item_count == 3


@pytest.mark.parametrize(
    ("entry", "detail"),
    [
        ("525512345678", "each item must be a JSON object {phone_number, reference?, metadata?}"),
        (None, "each item must be a JSON object {phone_number, reference?, metadata?}"),
        ({}, "phone_number: is required"),
        ({"phone_number": None}, "phone_number: is required"),
        ({"phone_number": 525512345678}, "phone_number: must be a string, not a number"),
        ({"phone_number": "525512345678", "phone": "x"}, "phone: unknown field"),
        ({"phone_number": "525512345678", "metadata": []}, "metadata: must be a JSON object"),
        ({"phone_number": "525512345678", "metadata": {"a": "\x00"}}, "metadata: strings must"),
        (
            {"phone_number": "525512345678", "metadata": {"a": "x" * METADATA_MAX_BYTES}},
            "metadata: is 4104 bytes",
        ),
        ({"phone_number": "525512345678", "reference": ""}, "reference: must be 1-255"),
        ({"phone_number": "525512345678", "reference": 7}, "reference: must be 1-255"),
        ({"phone_number": "525512345678", "reference": "a\x00"}, "reference: must be 1-255"),
        ({"phone_number": "525512345678", "reference": "a\nb"}, "reference: must be 1-255"),
        ({"phone_number": "525512345678", "reference": "\ud800"}, "reference: must be Unicode"),
        (
            {"phone_number": "525512345678", "reference": "x" * (REFERENCE_MAX_LENGTH + 1)},
            "reference: must be 1-255 characters without control characters; this one has 256",
        ),
    ],
)
def test_each_broken_rule_of_an_item_rejects_it_and_names_the_field(
    entry: object, detail: str
) -> None:
    job = accepted(from_json({"items": [{"phone_number": "525512345678"}, entry]}))
    assert len(job.rejections) == 1
    rejection = job.rejections[0]
    assert rejection.line == 2
    assert rejection.reference is None
    assert detail in rejection.detail


def test_a_rejection_lists_every_broken_rule_and_echoes_a_valid_reference() -> None:
    job = accepted(
        from_json(
            {
                "items": [
                    {"phone_number": "525512345678"},
                    {"phone_number": "x", "reference": "loan-9", "metadata": 1, "extra": 2},
                ]
            }
        )
    )
    assert job.rejections == (
        ItemRejection(
            2,
            "loan-9",
            "extra: unknown field (allowed: phone_number, reference, metadata); "
            f"phone_number: {TEST_RULE}; metadata: must be a JSON object, not a number",
        ),
    )


def test_a_reference_of_the_longest_length_is_kept() -> None:
    reference = "ñ" * REFERENCE_MAX_LENGTH
    job = accepted(from_json({"items": [{"phone_number": "525512345678", "reference": reference}]}))
    assert job.items[0].reference == reference


def test_the_number_goes_to_the_rule_as_given_and_the_item_keeps_what_the_rule_makes() -> None:
    seen: list[str] = []

    def recording_rule(text: str) -> str | FieldError:
        seen.append(text)
        return "525512345678"

    job = accepted(job_from_json(items(" +52 55 1234 5678 "), recording_rule))
    assert seen == [" +52 55 1234 5678 "]
    assert job.items[0].phone_number == "525512345678"


def test_a_job_with_nothing_valid_is_refused_with_its_first_rejections() -> None:
    errors = refused(from_json(items(*[f"bad{n}" for n in range(25)])))
    assert errors[0] == FieldError("items", "no item can be checked: all 25 are rejected")
    assert errors[1:] == [
        FieldError(None, f"line {line}: phone_number: {TEST_RULE}")
        for line in range(1, REJECTIONS_SHOWN + 1)
    ]


item_entries = st.one_of(
    st.builds(
        lambda digits, reference: {"phone_number": digits, "reference": reference},
        st.from_regex(r"[1-9][0-9]{9,12}", fullmatch=True),
        st.text(min_size=1, max_size=20).filter(lambda t: t.isprintable()),
    ),
    st.builds(lambda text: {"phone_number": text}, st.text(max_size=5)),
    st.sampled_from([None, 3, "x", [], {"metadata": {}}]),
)


def checkable(entry: object) -> bool:
    """Whether an entry of `item_entries` can be checked (its references are always valid)."""
    if not isinstance(entry, dict):
        return False
    number = entry.get("phone_number")
    return isinstance(number, str) and not isinstance(number_rule(number), FieldError)


@given(st.lists(item_entries, min_size=1, max_size=40))
def test_items_and_rejections_partition_the_lines_in_input_order(entries: list[object]) -> None:
    outcome = from_json({"items": entries})
    expected_lines = [line for line, entry in enumerate(entries, 1) if checkable(entry)]
    if not expected_lines:
        assert refused(outcome)[0].field == "items"
        return
    job = accepted(outcome)
    assert [item.line for item in job.items] == expected_lines
    assert [rejection.line for rejection in job.rejections] == [
        line for line in range(1, len(entries) + 1) if line not in expected_lines
    ]
    for item in job.items:
        entry = entries[item.line - 1]
        assert isinstance(entry, dict)
        assert item.phone_number == entry["phone_number"]
        assert item.reference == entry.get("reference")


def test_the_rule_of_checks_plugs_in_as_the_number_rule() -> None:
    job = accepted(job_from_json(items("+5215512341234", "12"), rule_of_checks))
    # Mexico's old mobile 1 is dropped, as POST /v1/checks drops it.
    assert job.items[0].phone_number == "525512341234"
    assert job.rejections[0].detail == "phone_number: has too few digits to be a phone number"

"""Reading a check job's request (service.domain.job_input): the JSON body and the CSV upload,
their limits, the items that cannot be checked, and the refusals that name the line or field."""

from __future__ import annotations

import codecs
import csv
import io
import re
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.checks import validate_check
from service.domain.intake import METADATA_MAX_BYTES, FieldError, Rejection
from service.domain.job_input import (
    JOB_BODY_MAX_BYTES,
    JOB_ITEMS_MAX,
    REFERENCE_MAX_LENGTH,
    REJECTIONS_SHOWN,
    ItemRejection,
    JobItem,
    JobOptions,
    JobRefused,
    JobRequest,
    job_from_csv,
    job_from_json,
)
from service.domain.phone_numbers import DEFAULT_CHECK_COUNTRIES
from service.domain.rechecks import RecheckPolicy
from service.domain.verdicts import Verdict

_DIGITS = re.compile(r"\+?([0-9]{8,15})")
TEST_RULE = "must be 8-15 digits (the tests' rule)"


def number_rule(text: str) -> str | FieldError:
    """A stand-in for the number rule of POST /v1/checks, so these tests hold whatever that
    rule becomes: digits after an optional '+'."""
    match = _DIGITS.fullmatch(text)
    return match.group(1) if match else FieldError("phone_number", TEST_RULE)


def rule_of_checks(text: str) -> str | FieldError:
    """The rule POST /v1/checks applies today, as a NumberReader."""
    checked = validate_check({"phone_number": text}, DEFAULT_CHECK_COUNTRIES)
    return checked.errors[0] if isinstance(checked, Rejection) else checked.number.digits


def from_json(body: object) -> JobRequest | JobRefused:
    return job_from_json(body, number_rule)


def from_csv(body: bytes | str, **query: str) -> JobRequest | JobRefused:
    data = body.encode() if isinstance(body, str) else body
    return job_from_csv(data, list(query.items()), number_rule)


def accepted(outcome: JobRequest | JobRefused) -> JobRequest:
    assert isinstance(outcome, JobRequest), outcome
    return outcome


def refused(outcome: JobRequest | JobRefused, status: int = 422) -> list[FieldError]:
    assert isinstance(outcome, JobRefused), outcome
    assert outcome.status == status
    return list(outcome.errors)


def messages(outcome: JobRequest | JobRefused) -> str:
    return " | ".join(error.describe() for error in refused(outcome))


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


# -- CSV -------------------------------------------------------------------------------------


def test_a_csv_job_reads_records_after_the_header_from_line_one() -> None:
    job = accepted(from_csv("phone_number,reference\n525512345678,a\n525512340000,b\n"))
    assert job == JobRequest(
        options=JobOptions(),
        items=(JobItem(1, "525512345678", "a", "{}"), JobItem(2, "525512340000", "b", "{}")),
        rejections=(),
    )


@pytest.mark.parametrize("ending", ["\r\n", "\n", "\r"])
@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8])
def test_a_bom_and_any_line_ending_are_accepted(ending: str, bom: bytes) -> None:
    text = ending.join(["phone_number,reference", "525512345678,a", "525512340000,b", ""])
    job = accepted(from_csv(bom + text.encode()))
    assert [(item.line, item.reference) for item in job.items] == [(1, "a"), (2, "b")]


def test_a_bom_and_crlf_line_ends_as_a_spreadsheet_writes_them() -> None:
    body = codecs.BOM_UTF8 + b"phone_number,reference\r\n525512345678,loan 1\r\n"
    assert accepted(from_csv(body)).items == (JobItem(1, "525512345678", "loan 1", "{}"),)


def test_quoted_fields_may_hold_commas_and_doubled_quotes() -> None:
    job = accepted(from_csv('phone_number,reference\n"525512345678","Pérez, ""Juan"""\n'))
    assert job.items[0].reference == 'Pérez, "Juan"'


def test_a_quoted_field_over_two_lines_is_one_record_and_lines_count_records() -> None:
    job = accepted(
        from_csv('phone_number,reference\n525512345678,"two\nlines"\n525512340000,next\n')
    )
    # A line break is a control character: the reference is refused, the next record is line 2.
    assert [rejection.line for rejection in job.rejections] == [1]
    assert "reference" in job.rejections[0].detail
    assert job.items == (JobItem(2, "525512340000", "next", "{}"),)


@pytest.mark.parametrize(
    "header",
    [
        "phone_number",
        "Phone_Number",
        " PHONE_NUMBER ",
        "id,phone_number,notes",
        "x,reference,phone_number",
    ],
)
def test_the_phone_number_column_is_found_by_name_without_case_or_spaces(header: str) -> None:
    width = header.count(",") + 1
    position = [cell.strip().lower() for cell in header.split(",")].index("phone_number")
    cells = ["other"] * width
    cells[position] = "525512345678"
    job = accepted(from_csv(f"{header}\n{','.join(cells)}\n"))
    assert [item.phone_number for item in job.items] == ["525512345678"]


def test_other_columns_are_ignored_and_reference_is_optional() -> None:
    job = accepted(from_csv("name,phone_number,amount\nAna,525512345678,100\n"))
    assert job.items == (JobItem(1, "525512345678", None, "{}"),)


def test_the_phone_cell_loses_its_surrounding_spaces_and_an_empty_reference_is_none() -> None:
    job = accepted(from_csv("phone_number,reference\n  525512345678 ,\n"))
    assert job.items == (JobItem(1, "525512345678", None, "{}"),)


def test_a_reference_cell_is_kept_as_given() -> None:
    job = accepted(from_csv("phone_number,reference\n525512345678, loan 1 \n"))
    assert job.items[0].reference == " loan 1 "


def test_blank_records_keep_their_line_but_are_no_items() -> None:
    job = accepted(from_csv("phone_number,reference\n\n525512345678,a\n,,\n  \n525512340000,b\n\n"))
    assert [(item.line, item.reference) for item in job.items] == [(2, "a"), (5, "b")]
    assert job.rejections == ()
    assert job.item_count == 2


def test_blank_lines_before_the_header_are_skipped() -> None:
    job = accepted(from_csv("\n\nphone_number\n525512345678\n"))
    assert job.items == (JobItem(1, "525512345678", None, "{}"),)


def test_a_short_record_has_empty_cells_and_a_long_one_extra_cells_ignored() -> None:
    job = accepted(from_csv("reference,phone_number\nonly-ref\nr2,525512345678,extra,more\n"))
    assert job.rejections == (ItemRejection(1, "only-ref", "phone_number: is required"),)
    assert job.items == (JobItem(2, "525512345678", "r2", "{}"),)


def test_a_bad_number_in_a_csv_is_a_rejection_by_line() -> None:
    job = accepted(from_csv("phone_number,reference\n525512345678,a\nnot a number,b\n"))
    assert job.rejections == (ItemRejection(2, "b", f"phone_number: {TEST_RULE}"),)


@pytest.mark.parametrize(
    "body",
    [
        "number,reference\n525512345678,a\n",
        "phone number\n525512345678\n",
        "phone_number;reference\n525512345678;a\n",
        "525512345678\n",
    ],
)
def test_a_csv_without_a_phone_number_column_is_refused_showing_the_columns_found(
    body: str,
) -> None:
    errors = refused(from_csv(body))
    assert len(errors) == 1
    assert errors[0].message.startswith("the header row has no phone_number column")
    assert all(column in errors[0].message for column in body.splitlines()[0].split(","))


def test_a_header_naming_phone_number_twice_is_refused() -> None:
    assert refused(from_csv("phone_number,Phone_Number\n525512345678,525512340000\n")) == [
        FieldError(None, "the header row names the phone_number column twice")
    ]


def test_a_header_naming_reference_twice_is_refused() -> None:
    assert refused(from_csv("phone_number,reference,reference\n525512345678,a,b\n")) == [
        FieldError(None, "the header row names the reference column twice")
    ]


@pytest.mark.parametrize("body", [b"", codecs.BOM_UTF8, b"\n\r\n", b" , \n"])
def test_an_empty_csv_is_refused(body: bytes) -> None:
    assert "the CSV is empty" in messages(from_csv(body))


@pytest.mark.parametrize("body", ["phone_number\n", "phone_number,reference\r\n\r\n,\r\n"])
def test_a_header_only_is_refused(body: str) -> None:
    assert refused(from_csv(body)) == [FieldError(None, "the CSV has a header row but no items")]


def test_a_csv_with_nothing_valid_is_refused_with_its_rejections() -> None:
    errors = refused(from_csv("phone_number,reference\nx,a\ny,b\n"))
    assert errors == [
        FieldError("items", "no item can be checked: all 2 are rejected"),
        FieldError(None, f"line 1: phone_number: {TEST_RULE}"),
        FieldError(None, f"line 2: phone_number: {TEST_RULE}"),
    ]


def test_bytes_that_are_not_utf8_are_refused_naming_the_line() -> None:
    body = "phone_number,reference\n525512345678,a\n525512340000,Pérez\n".encode("latin-1")
    assert refused(from_csv(body)) == [
        FieldError(
            None,
            "line 2: the CSV must be UTF-8 text (save it as CSV UTF-8); byte 52 (0xE9) is not",
        )
    ]


def test_bytes_that_are_not_utf8_in_the_header_name_the_header_row() -> None:
    body = b"phone_number,r\xe9f\n525512345678,a\n"
    assert messages(from_csv(body)).startswith("the header row: the CSV must be UTF-8 text")


def test_bytes_that_are_not_utf8_where_the_csv_is_broken_too_name_the_byte() -> None:
    body = b'phone_number\n"525512345678\xff'
    assert messages(from_csv(body)) == (
        "the CSV must be UTF-8 text (save it as CSV UTF-8); byte 26 (0xFF) is not"
    )


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ('phone_number,reference\n525512345678,"a"b\n', "line 1"),
        ('phone_number,reference\n525512345678,a\n525512340000,"open\n', "line 2"),
        ('"phone_number\n525512345678\n', "the header row"),
    ],
)
def test_broken_csv_is_refused_naming_the_line(body: str, where: str) -> None:
    errors = refused(from_csv(body))
    assert len(errors) == 1
    assert errors[0].message.startswith(f"{where}: not valid CSV (")


def test_a_nul_character_rejects_its_item_only() -> None:
    job = accepted(
        from_csv("phone_number,reference\n525512345678,a\x00\n525512340000\x00,b\n525512349999\n")
    )
    assert [rejection.line for rejection in job.rejections] == [1, 2]
    assert [item.line for item in job.items] == [3]
    assert job.rejections[0].detail.startswith("reference: must be 1-255 characters")
    assert job.rejections[1].detail == f"phone_number: {TEST_RULE}"


def test_a_csv_job_of_the_most_items_is_taken_and_one_more_is_refused() -> None:
    rows = "525512345678\n" * JOB_ITEMS_MAX
    assert accepted(from_csv("phone_number\n" + rows)).item_count == JOB_ITEMS_MAX
    assert refused(from_csv("phone_number\n" + rows + "525512345678\n")) == [
        FieldError("items", "holds more than 100000 items; a job may hold at most 100000")
    ]


@pytest.mark.parametrize("form", ["csv", "json"])
def test_a_list_past_the_limit_is_refused_before_any_number_is_checked(form: str) -> None:
    checked: list[str] = []

    def counting_rule(text: str) -> str | FieldError:
        checked.append(text)
        return text

    numbers = ["525512345678"] * (JOB_ITEMS_MAX + 1)
    if form == "csv":
        body = ("phone_number\n" + "\n".join(numbers)).encode()
        outcome = job_from_csv(body, [], counting_rule)
    else:
        outcome = job_from_json({"items": [{"phone_number": n} for n in numbers]}, counting_rule)
    assert [error.field for error in refused(outcome)] == ["items"]
    assert checked == []


def test_blank_records_do_not_count_towards_the_most_items() -> None:
    rows = "525512345678\n\n" * JOB_ITEMS_MAX
    assert accepted(from_csv("phone_number\n" + rows)).item_count == JOB_ITEMS_MAX


def test_a_body_over_16_mib_is_refused_413_before_anything_else() -> None:
    body = b"\xff" * (JOB_BODY_MAX_BYTES + 1)
    assert refused(job_from_csv(body, [("nope", "1")], number_rule), 413) == [
        FieldError(
            None, "the request body is 16777217 bytes; a job may take at most 16777216 (16 MiB)"
        )
    ]


def test_a_body_of_exactly_16_mib_is_read() -> None:
    head = b"phone_number,pad\n"
    row = b"525512345678," + b"x" * 100_000 + b"\n"
    rows, left = divmod(JOB_BODY_MAX_BYTES - len(head), len(row))
    last = b"525512345678," + b"x" * (left - len(b"525512345678,\n")) + b"\n"
    body = head + row * rows + last
    assert len(body) == JOB_BODY_MAX_BYTES
    assert accepted(job_from_csv(body, [], number_rule)).item_count == rows + 1


def test_query_parameters_give_the_options() -> None:
    job = accepted(
        from_csv("phone_number\n525512345678\n", name="dial list", max_age_s="3600", start="false")
    )
    assert job.options == JobOptions(name="dial list", max_age_s=3600, recheck=None, start=False)


def test_start_true_in_the_query_starts_the_job() -> None:
    assert accepted(from_csv("phone_number\n525512345678\n", start="true")).options.start


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ([("max_age", "60")], "query.max_age"),
        ([("recheck", "{}")], "query.recheck"),
        ([("start", "yes")], "query.start"),
        ([("start", "1")], "query.start"),
        ([("max_age_s", "-1")], "query.max_age_s"),
        ([("max_age_s", "2592001")], "query.max_age_s"),
        ([("name", "")], "query.name"),
        ([("name", "a"), ("name", "b")], "query.name"),
    ],
)
def test_a_broken_query_parameter_refuses_the_job_naming_it(
    query: list[tuple[str, str]], field: str
) -> None:
    errors = refused(job_from_csv(b"phone_number\n525512345678\n", query, number_rule))
    assert [error.field for error in errors] == [field]


def test_query_errors_and_header_errors_are_reported_together() -> None:
    errors = refused(from_csv("number\n525512345678\n", max_age_s="x"))
    assert [error.field for error in errors] == ["query.max_age_s", None]


def test_query_errors_and_bytes_that_are_not_utf8_are_reported_together() -> None:
    errors = refused(job_from_csv(b"phone_number\n\xff\n", [("start", "no")], number_rule))
    assert [error.field for error in errors] == ["query.start", None]


def test_the_same_list_as_csv_and_as_json_gives_the_same_items() -> None:
    rows = [("525512345678", "a, b"), ("bad", "c"), ("525512340000", "")]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["phone_number", "reference"])
    writer.writerows(rows)
    from_the_csv = accepted(from_csv(buffer.getvalue()))
    from_the_json = accepted(
        from_json(
            {
                "items": [
                    {"phone_number": number, **({"reference": ref} if ref else {})}
                    for number, ref in rows
                ]
            }
        )
    )
    assert from_the_csv == from_the_json


references = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)


@given(
    rows=st.lists(
        st.tuples(st.from_regex(r"\+?[1-9][0-9]{9,12}", fullmatch=True), references),
        min_size=1,
        max_size=30,
    ),
    ending=st.sampled_from(["\r\n", "\n"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    bom=st.booleans(),
)
def test_any_csv_a_writer_makes_reads_back_row_for_row(
    rows: list[tuple[str, str]], ending: str, quoting: Literal[0, 1, 2, 3], bom: bool
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=ending, quoting=quoting)
    writer.writerow(["reference", "phone_number"])
    writer.writerows([(reference, number) for number, reference in rows])
    body = (codecs.BOM_UTF8 if bom else b"") + buffer.getvalue().encode()
    job = accepted(from_csv(body))
    assert job.rejections == ()
    assert [(item.line, item.phone_number, item.reference) for item in job.items] == [
        (line, number.lstrip("+"), reference or None)
        for line, (number, reference) in enumerate(rows, 1)
    ]

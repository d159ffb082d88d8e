"""Reading a check job's CSV upload (service.domain.job_csv): records, the header's columns, the
query parameters, the limits, bytes that are not UTF-8 or broken CSV, and the same job as the same
list in JSON."""

from __future__ import annotations

import codecs
import csv
import io
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.intake import FieldError
from service.domain.job_csv import job_from_csv
from service.domain.job_input import (
    JOB_BODY_MAX_BYTES,
    JOB_ITEMS_MAX,
    ItemRejection,
    JobItem,
    JobOptions,
    JobRefused,
    JobRequest,
    job_from_json,
)
from tests.support.job_requests import (
    TEST_RULE,
    accepted,
    from_json,
    messages,
    number_rule,
    refused,
)


def from_csv(body: bytes | str, **query: str) -> JobRequest | JobRefused:
    data = body.encode() if isinstance(body, str) else body
    return job_from_csv(data, list(query.items()), number_rule)


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

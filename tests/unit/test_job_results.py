"""A check job's results as streamed CSV and NDJSON (service.domain.job_results): the row's
shape, RFC 4180 CSV that a spreadsheet cannot run as formulas, and NDJSON values as given."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.job_results import (
    FORMULA_STARTS,
    RESULT_COLUMNS,
    ResultRow,
    results_csv,
    results_ndjson,
    safe_csv_cell,
)
from service.domain.jsontext import json_bytes

DONE = datetime(2026, 12, 1, 10, 0, 5, 123456, tzinfo=UTC)


BASE = ResultRow(
    line=1,
    reference="loan-1",
    phone_number_masked="52********5678",
    state="completed",
    phone_status="connected",
    verdict="live",
    cached=False,
    task_id="T-1",
    completed_at=DONE,
)


def row(line: int = 1, **overrides: Any) -> ResultRow:
    return replace(BASE, line=line, **overrides)


def csv_text(rows: list[ResultRow], **options: int) -> str:
    return b"".join(results_csv(rows, **options)).decode("utf-8")


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_the_columns_are_the_contracts() -> None:
    assert RESULT_COLUMNS == (
        "line",
        "reference",
        "phone_number_masked",
        "state",
        "phone_status",
        "verdict",
        "cached",
        "task_id",
        "completed_at",
    )
    assert tuple(row().as_json()) == RESULT_COLUMNS


def test_a_row_as_json_keeps_every_value_as_given() -> None:
    assert row(reference=None, verdict=None, completed_at=None, cached=True).as_json() == {
        "line": 1,
        "reference": None,
        "phone_number_masked": "52********5678",
        "state": "completed",
        "phone_status": "connected",
        "verdict": None,
        "cached": True,
        "task_id": "T-1",
        "completed_at": None,
    }


def test_csv_is_a_header_then_one_crlf_record_per_row() -> None:
    text = csv_text(
        [
            row(1),
            row(
                2,
                reference=None,
                phone_status=None,
                verdict=None,
                task_id=None,
                completed_at=None,
                state="pending",
                cached=True,
            ),
        ]
    )
    assert text == (
        "line,reference,phone_number_masked,state,phone_status,verdict,cached,task_id,completed_at\r\n"
        "1,loan-1,52********5678,completed,connected,live,false,T-1,2026-12-01T10:00:05.123456Z\r\n"
        "2,,52********5678,pending,,,true,,\r\n"
    )


def test_csv_of_no_rows_is_the_header_alone() -> None:
    assert read_csv(csv_text([])) == [list(RESULT_COLUMNS)]


def test_completed_at_is_written_as_the_api_writes_it_in_json() -> None:
    for moment in (
        DONE,
        DONE.replace(microsecond=0),
        DONE.astimezone(timezone(timedelta(hours=-6))),
    ):
        written = read_csv(csv_text([row(completed_at=moment)]))[1][8]
        assert written == json.loads(json_bytes({"at": moment}, utc_z=True))["at"]


def test_a_reference_with_commas_quotes_and_line_breaks_reads_back_whole() -> None:
    reference = 'Pérez, "Juan"\r\nline two'
    assert read_csv(csv_text([row(reference=reference)]))[1][1] == reference


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_a_cell_a_spreadsheet_would_run_as_a_formula_gets_a_leading_quote(start: str) -> None:
    reference = start + 'HYPERLINK("http://evil")'
    cells = read_csv(csv_text([row(reference=reference, task_id=start + "1", phone_status=start)]))[
        1
    ]
    assert cells[1] == "'" + reference
    assert cells[7] == "'" + start + "1"
    assert cells[4] == "'" + start


@pytest.mark.parametrize("text", ["loan=1", " =1", "", "1-2", "'=1", "52********5678", "T-1"])
def test_a_cell_that_does_not_start_a_formula_is_left_alone(text: str) -> None:
    assert safe_csv_cell(text) == text


@given(st.text(max_size=20))
def test_no_written_cell_starts_a_formula_and_removing_the_quote_gives_the_text_back(
    text: str,
) -> None:
    safe = safe_csv_cell(text)
    assert not safe.startswith(FORMULA_STARTS)
    assert (safe[1:] if safe != text else safe) == text


@given(
    st.lists(
        st.builds(
            row,
            line=st.integers(1, 100_000),
            reference=st.none() | st.text(st.characters(codec="utf-8"), max_size=15),
            task_id=st.none() | st.from_regex(r"[A-Za-z0-9._:-]{1,12}", fullmatch=True),
            cached=st.booleans(),
        ),
        max_size=25,
    ),
    st.integers(1, 7),
)
def test_any_rows_read_back_from_csv_record_for_record(rows: list[ResultRow], chunk: int) -> None:
    records = read_csv(csv_text(rows, rows_per_chunk=chunk))
    assert records[0] == list(RESULT_COLUMNS)
    assert len(records) == len(rows) + 1
    for record, original in zip(records[1:], rows, strict=True):
        assert record[0] == str(original.line)
        assert record[1] == safe_csv_cell(original.reference or "")
        assert record[6] == ("true" if original.cached else "false")
        assert record[7] == safe_csv_cell(original.task_id or "")


def test_csv_streams_the_header_first_then_a_chunk_per_rows_per_chunk() -> None:
    chunks = list(results_csv([row(line) for line in range(1, 8)], rows_per_chunk=3))
    assert [chunk.count(b"\r\n") for chunk in chunks] == [1, 3, 3, 1]


def test_csv_reads_its_rows_as_it_goes() -> None:
    taken: list[int] = []

    def rows() -> Iterator[ResultRow]:
        for line in range(1, 10):
            taken.append(line)
            yield row(line)

    stream = results_csv(rows(), rows_per_chunk=2)
    next(stream)
    assert taken == []
    next(stream)
    assert taken == [1, 2]


def test_ndjson_is_one_compact_object_a_line_with_values_as_given() -> None:
    formula = "=1+2"
    text = b"".join(results_ndjson([row(1, reference=formula), row(2, completed_at=None)])).decode()
    lines = text.split("\n")
    assert lines[-1] == ""
    assert [json.loads(line) for line in lines[:-1]] == [
        {**row(1).as_json(), "reference": "=1+2", "completed_at": "2026-12-01T10:00:05.123456Z"},
        {**row(2).as_json(), "completed_at": None},
    ]
    assert " " not in lines[1].replace("52********5678", "")


def test_ndjson_of_no_rows_is_empty() -> None:
    assert list(results_ndjson([])) == []


@given(st.integers(0, 20), st.integers(1, 6))
def test_ndjson_chunks_hold_whole_lines(rows: int, chunk: int) -> None:
    chunks = list(results_ndjson([row(line) for line in range(1, rows + 1)], rows_per_chunk=chunk))
    assert all(piece.endswith(b"\n") for piece in chunks)
    assert sum(piece.count(b"\n") for piece in chunks) == rows
    assert len(chunks) == -(-rows // chunk)


def test_text_beyond_ascii_is_utf8_in_both_forms() -> None:
    reference = "Núñez 日本"
    assert reference.encode() in b"".join(results_csv([row(reference=reference)]))
    assert reference.encode() in b"".join(results_ndjson([row(reference=reference)]))

"""A check job's request as a `text/csv` body and its query parameters, read by the rules of
`service.domain.job_input` (the job's limits, an item's fields, the refusals), so that a CSV job
and a JSON job of the same list are the same job.

CSV: UTF-8, a BOM allowed; records end in CRLF, LF or CR; fields separated by commas and quoted
as RFC 4180 says (a quoted field may hold commas, line breaks and doubled quotes). The header row
names the columns: `phone_number` (required) and `reference` (optional), compared without
surrounding spaces and without case; other columns are ignored, so a spreadsheet's own columns
need not be removed first. A phone number cell is taken without its surrounding spaces (cells
padded by a spreadsheet); an empty `reference` cell means none (CSV cannot tell empty from
absent). Query parameters: `name`, `max_age_s` (decimal digits), `start` (`true` or `false`),
each at most once, no other (a misspelt `max_age` must not be dropped without a word). A CSV job
has no metadata and no `recheck` (the contract gives them no column or parameter).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence

from service.domain.check_options import check_max_age_s_text
from service.domain.intake import FieldError, shown_field_name
from service.domain.job_input import (
    JOB_BODY_MAX_BYTES,
    JOB_ITEMS_MAX,
    NAME_MAX_LENGTH,
    REFERENCE_MAX_LENGTH,
    ItemRejection,
    JobItem,
    JobOptions,
    JobRefused,
    JobRequest,
    NumberReader,
    check_number,
    check_text,
    item_detail,
    job_of,
    refusal,
    too_many_items,
)

CSV_QUERY_PARAMETERS = ("name", "max_age_s", "start")
CSV_PHONE_NUMBER_COLUMN = "phone_number"
CSV_REFERENCE_COLUMN = "reference"

# What `surrogateescape` makes of a byte that is not UTF-8.
_UNDECODABLE = re.compile(r"[\udc80-\udcff]")


def job_from_csv(
    body: bytes, query: Sequence[tuple[str, str]], number_rule: NumberReader
) -> JobRequest | JobRefused:
    """Read a `text/csv` job body and its query parameters (every pair, in order, so that a
    parameter given twice is seen)."""
    if len(body) > JOB_BODY_MAX_BYTES:
        return JobRefused(
            413,
            (
                FieldError(
                    None,
                    f"the request body is {len(body)} bytes; a job may take at most "
                    f"{JOB_BODY_MAX_BYTES} (16 MiB)",
                ),
            ),
        )
    errors: list[FieldError] = []
    options = _options_from_query(query, errors)
    text = _utf8_text(body)
    if isinstance(text, FieldError):
        return refusal(*errors, text)
    # The cells first and the rules after, so that a list past the limit is refused before any
    # number is checked (the count comes before the items, as in JSON).
    cells: list[tuple[int, str, str]] = []
    try:
        records = _csv_records(text)
        columns = _columns_of_header(next(records, None), errors)
        if errors or options is None or columns is None:
            return refusal(*errors)
        phone_column, reference_column = columns
        for line, record in records:
            if _blank(record):
                continue
            if len(cells) == JOB_ITEMS_MAX:
                return refusal(too_many_items(f"more than {JOB_ITEMS_MAX}"))
            cells.append((line, _cell(record, phone_column), _cell(record, reference_column)))
    except _CsvUnreadable as unreadable:
        return refusal(*errors, unreadable.error)
    if not cells:
        return refusal(FieldError(None, "the CSV has a header row but no items"))
    return job_of(
        options,
        (
            _item_from_csv(line, phone_cell, reference_cell, number_rule)
            for line, phone_cell, reference_cell in cells
        ),
    )


def _item_from_csv(
    line: int, phone_cell: str, reference_cell: str, number_rule: NumberReader
) -> JobItem | ItemRejection:
    errors: list[FieldError] = []
    phone_number = check_number(phone_cell.strip() or None, number_rule, errors)
    reference = check_text(reference_cell or None, "reference", REFERENCE_MAX_LENGTH, errors)
    if errors or phone_number is None:
        return ItemRejection(line, reference, item_detail(errors))
    return JobItem(line, phone_number, reference, "{}")


def _cell(record: list[str], column: int | None) -> str:
    """A record's cell in that column; empty when the record is shorter or there is no column."""
    return record[column] if column is not None and column < len(record) else ""


def _options_from_query(
    query: Sequence[tuple[str, str]], errors: list[FieldError]
) -> JobOptions | None:
    found = len(errors)
    given: dict[str, str] = {}
    for parameter, value in query:
        if parameter not in CSV_QUERY_PARAMETERS:
            errors.append(
                FieldError(
                    f"query.{shown_field_name(parameter)}",
                    "unknown query parameter (allowed: name, max_age_s, start)",
                )
            )
        elif parameter in given:
            errors.append(FieldError(f"query.{parameter}", "is given more than once"))
        else:
            given[parameter] = value
    name = check_text(given.get("name"), "query.name", NAME_MAX_LENGTH, errors)
    max_age_text = given.get("max_age_s")
    max_age_s = 0 if max_age_text is None else check_max_age_s_text(max_age_text, errors)
    start_text = given.get("start")
    if start_text not in (None, "true", "false"):
        errors.append(FieldError("query.start", "must be true or false"))
    if len(errors) > found or max_age_s is None:
        return None
    return JobOptions(name=name, max_age_s=max_age_s, start=start_text != "false")


def _utf8_text(body: bytes) -> str | FieldError:
    """The body's text without its BOM, or where it stops being UTF-8: the line (counted as
    items are) of the first byte that is not, found by reading the records again with that
    byte kept aside."""
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        bad_byte = body[error.start]
        found_at = f"byte {error.start} (0x{bad_byte:02X})"
    rule = "the CSV must be UTF-8 text (save it as CSV UTF-8)"
    try:
        for line, record in _csv_records(body.decode("utf-8-sig", "surrogateescape")):
            if any(_UNDECODABLE.search(cell) for cell in record):
                where = "the header row" if line == 0 else f"line {line}"
                return FieldError(None, f"{where}: {rule}; {found_at} is not")
    except _CsvUnreadable:
        pass
    return FieldError(None, f"{rule}; {found_at} is not")


class _CsvUnreadable(Exception):
    def __init__(self, error: FieldError) -> None:
        super().__init__(error.message)
        self.error = error


def _csv_records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) of each record, the header row (the first record that is not blank) being
    line 0; broken CSV raises _CsvUnreadable naming the line."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    line = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            where = "the header row" if line == 0 else f"line {line}"
            raise _CsvUnreadable(FieldError(None, f"{where}: not valid CSV ({error})")) from None
        if line == 0 and _blank(record):
            continue
        yield line, record
        line += 1


def _blank(record: list[str]) -> bool:
    """A record of empty cells only: a blank line, or a spreadsheet's empty row (`,,`)."""
    return not any(cell.strip() for cell in record)


def _columns_of_header(
    header: tuple[int, list[str]] | None, errors: list[FieldError]
) -> tuple[int, int | None] | None:
    """The positions of the `phone_number` and `reference` columns."""
    if header is None:
        errors.append(
            FieldError(
                None,
                f"the CSV is empty; it needs a header row with a {CSV_PHONE_NUMBER_COLUMN} column",
            )
        )
        return None
    names = [cell.strip().casefold() for cell in header[1]]
    positions: dict[str, int] = {}
    for wanted in (CSV_PHONE_NUMBER_COLUMN, CSV_REFERENCE_COLUMN):
        found = [index for index, name in enumerate(names) if name == wanted]
        if len(found) > 1:
            errors.append(FieldError(None, f"the header row names the {wanted} column twice"))
        elif found:
            positions[wanted] = found[0]
    if CSV_PHONE_NUMBER_COLUMN not in positions:
        if not any(name == CSV_PHONE_NUMBER_COLUMN for name in names):
            shown = ", ".join(shown_field_name(cell) for cell in header[1][:10])
            errors.append(
                FieldError(
                    None,
                    f"the header row has no {CSV_PHONE_NUMBER_COLUMN} column (columns are "
                    f"separated by commas; found: {shown or 'nothing'})",
                )
            )
        return None
    return positions[CSV_PHONE_NUMBER_COLUMN], positions.get(CSV_REFERENCE_COLUMN)

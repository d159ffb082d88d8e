"""The models and OpenAPI text of /v1/check-jobs (service/api/check_job_models.py) say what the
domain's reading of a job (service/domain/job_input.py, job_csv.py) does: the same fields, the
same query parameters, and the same rule for a text for people."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from service.api.check_job_models import CREATE_OPENAPI, CheckJobIn, CheckJobItemIn
from service.domain.intake import FieldError
from service.domain.job_csv import CSV_QUERY_PARAMETERS
from service.domain.job_input import (
    ITEM_FIELDS,
    JOB_FIELDS,
    NAME_MAX_LENGTH,
    REFERENCE_MAX_LENGTH,
    check_text,
)


def test_the_models_fields_are_the_fields_the_domain_reads() -> None:
    assert set(CheckJobIn.model_fields) == set(JOB_FIELDS)
    assert set(CheckJobItemIn.model_fields) == set(ITEM_FIELDS)


def test_the_documented_query_parameters_are_those_a_csv_job_takes() -> None:
    documented = [p["name"] for p in CREATE_OPENAPI["parameters"] if p["in"] == "query"]
    assert documented == list(CSV_QUERY_PARAMETERS)


def schema_takes_reference(text: str) -> bool:
    try:
        CheckJobItemIn(phone_number="+52 55 1234 5678", reference=text)
    except ValidationError:
        return False
    return True


def domain_takes(text: str, max_length: int) -> bool:
    errors: list[FieldError] = []
    return check_text(text, "reference", max_length, errors) == text and not errors


@given(st.text(max_size=REFERENCE_MAX_LENGTH + 3))
def test_a_reference_the_schema_shows_as_valid_is_one_the_domain_takes(text: str) -> None:
    assert schema_takes_reference(text) == domain_takes(text, REFERENCE_MAX_LENGTH)


@given(st.text(st.sampled_from("ab \t\n\r\x00\x1f\x7f\x80é"), max_size=8))
def test_a_name_with_a_control_character_anywhere_is_refused_by_both(text: str) -> None:
    items = [{"phone_number": "+52 55 1234 5678"}]
    try:
        CheckJobIn.model_validate({"items": items, "name": text})
        schema_takes = True
    except ValidationError:
        schema_takes = False
    assert schema_takes == domain_takes(text, NAME_MAX_LENGTH)

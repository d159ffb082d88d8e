"""The verdict of a result (service/domain/verdicts.py): the contract's table, every status of it,
and what a status outside it gets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.answers import KNOWN_PHONE_STATUSES, PhoneResult, PhoneStatus
from service.domain.schemas import TaskResult
from service.domain.verdicts import VERDICT_OF_STATUS, Verdict, verdict_of, with_verdict

# The contract's table ("Phone numbers and what an answer means"), written out as it reads.
CONTRACT_TABLE = {
    "ring": "live",
    "connected": "live",
    "busy": "live",
    "turned_off": "unreachable",
    "outside_service_area": "unreachable",
    "empty": "dead",
    "line_abnormal": "retry",
    "temp_unavailable": "retry",
}

unknown_statuses = st.text(max_size=64).filter(lambda text: text not in KNOWN_PHONE_STATUSES)


@pytest.mark.parametrize(("phone_status", "verdict"), CONTRACT_TABLE.items())
def test_each_documented_status_gets_the_contracts_verdict(phone_status: str, verdict: str) -> None:
    assert verdict_of(phone_status) == verdict
    assert verdict_of(phone_status) is Verdict(verdict)


def test_the_table_covers_every_documented_status_and_only_those() -> None:
    assert set(CONTRACT_TABLE) == KNOWN_PHONE_STATUSES
    assert set(VERDICT_OF_STATUS) == set(PhoneStatus)


def test_every_verdict_is_the_verdict_of_some_status() -> None:
    assert set(VERDICT_OF_STATUS.values()) == set(Verdict)
    assert [verdict.value for verdict in Verdict] == ["live", "unreachable", "dead", "retry"]


@pytest.mark.parametrize(
    "phone_status",
    ["", "RING", "Ring", " ring", "ring ", "ringing", "voicemail", "unknown", "live", "retry"],
)
def test_a_status_upstream_does_not_document_gets_no_verdict(phone_status: str) -> None:
    assert verdict_of(phone_status) is None


@given(unknown_statuses)
def test_no_undocumented_status_is_given_a_verdict(phone_status: str) -> None:
    assert verdict_of(phone_status) is None


def test_a_verdict_is_its_value_in_json() -> None:
    assert json.dumps({"verdict": Verdict.RETRY}) == '{"verdict": "retry"}'


# --- the result's JSON ------------------------------------------------------------------------


@pytest.mark.parametrize("phone_status", [*CONTRACT_TABLE, "voicemail"])
def test_a_results_json_shows_the_verdict_of_its_status(phone_status: str) -> None:
    shown = TaskResult(phone_number="0062********", phone_status=phone_status)

    assert shown.model_dump(mode="json") == {
        "phone_number": "0062********",
        "phone_status": phone_status,
        "verdict": CONTRACT_TABLE.get(phone_status),
    }


def test_a_result_read_back_derives_its_verdict_whatever_it_was_given() -> None:
    given_one = {"phone_number": "0062****", "phone_status": "empty", "verdict": "live"}

    assert TaskResult.model_validate(given_one).model_dump(mode="json")["verdict"] == "dead"


def test_the_stored_form_of_a_result_has_no_verdict() -> None:
    # tasks.result keeps upstream's two fields; the verdict is never stored apart from them.
    assert PhoneResult("0062****", "ring").as_json() == {
        "phone_number": "0062****",
        "phone_status": "ring",
    }


# --- JSON written before results carried a verdict ----------------------------------------------


def task(result: object) -> dict[str, Any]:
    return {"task_id": "T-1", "state": "completed", "result": result, "metadata": {"n": 1}}


@pytest.mark.parametrize(("phone_status", "verdict"), [*CONTRACT_TABLE.items(), ("odd", None)])
def test_an_old_tasks_result_gets_the_verdict_of_its_status(
    phone_status: str, verdict: str | None
) -> None:
    old = task({"phone_number": "0062****", "phone_status": phone_status})

    shown = with_verdict(old)

    assert shown == task(
        {"phone_number": "0062****", "phone_status": phone_status, "verdict": verdict}
    )
    assert "verdict" not in old["result"]  # the stored JSON is not changed in place


def test_a_result_that_has_its_verdict_keeps_it() -> None:
    # An event keeps the task as it was when it was written.
    written = task({"phone_number": "0062****", "phone_status": "ring", "verdict": "live"})

    assert with_verdict(written) is written


@pytest.mark.parametrize(
    "data",
    [
        task(None),
        {"task_id": "T-1", "state": "expired"},
        task({"phone_number": "0062****"}),
        task({"phone_number": "0062****", "phone_status": 3}),
        task("ring"),
        # Another event's data: a subscription, a job.
        {"id": "sub_1", "url": "https://hooks.example.com", "enabled": False},
        {"id": "job_1", "counts": {"by_verdict": {"live": 1}}},
    ],
)
def test_data_without_a_result_to_read_is_left_as_it_is(data: dict[str, Any]) -> None:
    assert with_verdict(data) is data


@given(st.sampled_from([*CONTRACT_TABLE, "odd"]), st.booleans())
def test_adding_the_verdict_twice_is_adding_it_once(phone_status: str, had_one: bool) -> None:
    result: dict[str, Any] = {"phone_number": "0062****", "phone_status": phone_status}
    if had_one:
        result["verdict"] = verdict_of(phone_status)

    once = with_verdict(task(result))

    assert with_verdict(once) == once
    assert once["result"]["verdict"] == verdict_of(phone_status)

"""service.domain.problems: the one builder of problem documents and the code of each kind."""

from __future__ import annotations

from pathlib import Path

from service.domain import problems
from service.domain.checks import SUBMIT_OUTCOME_UNKNOWN
from service.domain.problems import kind_of_status, problem_document, upstream_kind


def test_a_named_kind_gives_its_code_and_a_phonebridge_type() -> None:
    document = problem_document(409, "already final", problems.TASK_ALREADY_FINAL)
    assert document == {
        "type": "urn:phonebridge:problem:task-already-final",
        "title": "Conflict",
        "status": 409,
        "detail": "already final",
        "code": "TASK_ALREADY_FINAL",
    }


def test_a_kind_without_a_slug_is_about_blank() -> None:
    document = problem_document(404, "no task 'T-1'", problems.NOT_FOUND)
    assert (document["type"], document["code"]) == ("about:blank", "NOT_FOUND")


def test_invalid_input_lists_each_broken_rule() -> None:
    errors = [{"field": "task_id", "message": "too long"}]
    document = problem_document(422, "bad", problems.VALIDATION_FAILED, errors=errors)
    assert document["errors"] == errors
    assert document["type"] == "urn:phonebridge:problem:invalid-input"


def test_a_status_alone_names_a_listed_code_or_the_status() -> None:
    assert kind_of_status(404).code == "NOT_FOUND"
    assert kind_of_status(413).code == "BODY_TOO_LARGE"
    assert kind_of_status(400).code == "BAD_REQUEST"
    assert kind_of_status(599).code == "ERROR"
    # Known only by its status, a problem never claims a phonebridge type.
    assert kind_of_status(422).type == "about:blank"


def test_a_submit_code_is_kept_and_its_type_is_its_kebab_case() -> None:
    document = problem_document(
        502, "lost", upstream_kind("SUBMIT_OUTCOME_UNKNOWN"), title="Bad Gateway"
    )
    assert document["code"] == "SUBMIT_OUTCOME_UNKNOWN"
    assert document["type"] == "urn:phonebridge:problem:submit-outcome-unknown"
    assert document["title"] == "Bad Gateway"


def test_the_readme_lists_every_code_a_problem_can_carry() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    kinds = [value for value in vars(problems).values() if isinstance(value, problems.ProblemKind)]
    submit_codes = [SUBMIT_OUTCOME_UNKNOWN, "UPSTREAM_UNAVAILABLE", "RATE_CEILING"]
    assert len(kinds) > 10
    for code in [kind.code for kind in kinds] + submit_codes:
        assert f"| `{code}` |" in readme, code

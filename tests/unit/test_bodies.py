"""Request bodies as JSON (service/api/bodies.py): a readable object passes, and a body that is
not JSON or names a key twice answers 422 saying which, never echoing the body."""

from __future__ import annotations

import pytest

from service.api.bodies import parse_body
from service.api.errors import ApiProblem


def test_a_json_object_is_read() -> None:
    assert parse_body(b'{"task_id": "T-1", "metadata": {"a": 1}}') == {
        "task_id": "T-1",
        "metadata": {"a": 1},
    }


def test_a_body_that_is_not_json_answers_422_without_echoing_it() -> None:
    with pytest.raises(ApiProblem) as refused:
        parse_body(b'{"secret-looking": pbk_abc')

    assert refused.value.status == 422
    assert "not valid JSON" in refused.value.detail
    assert "pbk_abc" not in refused.value.detail


def test_a_key_named_twice_in_one_object_answers_422_naming_it() -> None:
    with pytest.raises(ApiProblem) as refused:
        parse_body(b'{"task_id": "T-1", "task_id": "T-2"}')

    assert refused.value.status == 422
    assert "'task_id' twice" in refused.value.detail

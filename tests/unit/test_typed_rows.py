"""Rows that leave the store are built so that mypy checks them (service/store/__init__.py): a
Core query names its columns through the ORM classes of service/store/tables/, a row type is
built with its fields' names, and a state column reads as its StrEnum. Each mistake below fails
`mypy --strict` as scripts/check runs it, and the same code spelt right passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Dialect

from service.domain.states import TaskState
from service.store.tables.base import StateText

ROOT = Path(__file__).resolve().parents[2]
MYPY = str(Path(sys.executable).with_name("mypy"))

# A subscription row built the way service/store/subscriptions.py builds one.
BUILD_A_SUBSCRIPTION = """
from datetime import datetime

from sqlalchemy import select

from service.domain.states import TaskState
from service.store.subscriptions import SubscriptionRow
from service.store.tables.tasks import Task
from service.store.tables.webhooks import Subscription

statement = select(Subscription.id, Subscription.{column}, Subscription.created_at)


def build(pk: int, url: str, created_at: datetime) -> SubscriptionRow:
    return SubscriptionRow(
        pk=pk, id="sub_1", {field}=url, event_types=[], description="", enabled=True,
        disabled_reason=None, created_at=created_at,
    )


def final(state: TaskState) -> bool:
    return state != TaskState.PENDING


finished = select(Task.id).where(Task.state == TaskState.{state})
read_state: {state_type} = Task().state
"""
RIGHT = {"column": "url", "field": "url", "state": "COMPLETED", "state_type": "TaskState"}


def mypy_on(snippet: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    module = tmp_path / "snippet.py"
    module.write_text(snippet)
    # Run from the repository so that `service` is the tree under test; its cache keeps it quick.
    return subprocess.run(
        [MYPY, "--strict", "--no-error-summary", str(module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_row_built_with_the_right_columns_and_fields_passes_mypy(tmp_path: Path) -> None:
    result = mypy_on(BUILD_A_SUBSCRIPTION.format(**RIGHT), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("mistake", "error"),
    [
        ({"column": "ulr"}, '"type[Subscription]" has no attribute "ulr"'),
        ({"field": "ulr"}, 'Unexpected keyword argument "ulr" for "SubscriptionRow"'),
        ({"state": "COMPLETE"}, '"type[TaskState]" has no attribute "COMPLETE"'),
        ({"state_type": "int"}, 'expression has type "TaskState", variable has type "int"'),
    ],
    ids=["misspelt-column", "misspelt-field", "misspelt-state", "state-column-read-as-int"],
)
def test_a_misspelt_column_field_or_state_fails_mypy(
    mistake: dict[str, str], error: str, tmp_path: Path
) -> None:
    result = mypy_on(BUILD_A_SUBSCRIPTION.format(**(RIGHT | mistake)), tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert error in result.stdout


@pytest.fixture
def dialect() -> Dialect:
    # An engine that never connects: only its dialect is used.
    return create_engine("postgresql+psycopg://").dialect


def test_a_state_column_reads_its_text_as_the_enum_and_writes_the_plain_value(
    dialect: Dialect,
) -> None:
    column = StateText(TaskState, 16)
    assert column.process_result_value("completed", dialect) is TaskState.COMPLETED
    assert column.process_bind_param(TaskState.FAILED, dialect) == "failed"
    assert type(column.process_bind_param("failed", dialect)) is str
    assert column.process_result_value(None, dialect) is None


def test_a_state_column_refuses_a_value_its_enum_does_not_have(dialect: Dialect) -> None:
    with pytest.raises(ValueError, match="'complete' is not a valid TaskState"):
        StateText(TaskState, 16).process_bind_param("complete", dialect)

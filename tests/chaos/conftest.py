"""The chaos suite's fixtures: one stack for the whole suite (starting it costs ~10 s of CPU),
a fresh tenant per test, and the figures each scenario observed, written to
build/chaos-last-run.json for docs/reliability.md.

Each test leaves the stack as it found it: every process running, no fault injected, and none
of its tasks still pending (a failed test's leftovers would eat the next one's rate budget).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.chaos.stack import Stack, running_stack
from tests.support.chaos.tenant import Tenant

REPORT_PATH = Path(__file__).resolve().parents[2] / "build" / "chaos-last-run.json"
OUTCOME = pytest.StashKey[str]()
# A scenario takes 10-45 s on a quiet 2-core machine; its own waits give up well before this.
SCENARIO_TIMEOUT_S = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.timeout(SCENARIO_TIMEOUT_S))
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[OUTCOME] = report.outcome
    return report


@pytest.fixture(scope="session")
def chaos_report() -> Iterator[dict[str, Any]]:
    scenarios: dict[str, Any] = {}
    yield scenarios
    if scenarios:
        REPORT_PATH.parent.mkdir(exist_ok=True)
        report = {"finished_at": datetime.now(UTC).isoformat(), "scenarios": scenarios}
        REPORT_PATH.write_text(json.dumps(report, indent=2) + "\n")


# Package scope: the stack stops after the last chaos test instead of polling, idle, beside the
# rest of the suite until the session ends.
@pytest.fixture(scope="package")
def stack() -> Iterator[Stack]:
    with running_stack() as running:
        yield running


@pytest.fixture
def tenant(
    stack: Stack, chaos_report: dict[str, Any], request: pytest.FixtureRequest
) -> Iterator[Tenant]:
    stack.ensure_running()
    stack.sim.control.replace_faults()
    client = Tenant(stack, f"chaos-{request.node.name}")
    try:
        yield client
        crashed = stack.crashed()
        assert not crashed, "a service died on its own:\n" + "\n\n".join(crashed)
        outcome = request.node.stash.get(OUTCOME, "not run")
        chaos_report[request.node.name] = {"outcome": outcome, **client.figures.as_dict()}
    finally:
        client.close()
        stack.sim.control.replace_faults()
        stack.ensure_running()
        with stack.database() as db:
            db.execute(
                "UPDATE tasks SET state = 'cancelled', next_poll_at = NULL, completed_at = now()"
                " WHERE state = 'pending'"
            )

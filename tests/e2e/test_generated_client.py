"""A client generated from the live schema works: `openapi-python-client` turns a running
`phonebridge api`'s `/openapi.json` into a package, and the main operations go through that
package's typed functions against the real process, answers parsed into its models (the
problems too: a 404 and a 429 come back as `Problem` with their `code`), with
`raise_on_unexpected_status` on, so an answer the schema does not declare fails the test."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from service.sim.server import SimServer
from tests.support.commands import create_api_key, run_command, upstream_environment
from tests.support.receivers import Receiver
from tests.support.server import running_api

# A real `phonebridge api` process and a code generator: a few seconds.
pytestmark = pytest.mark.slow

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "phonebridge_generated_client"


@pytest.fixture(scope="module")
def api_environment(database_url: str, redis_url: str, sim: SimServer) -> dict[str, str]:
    return upstream_environment(
        database_url,
        redis_url,
        sim.base_url,
        # The test's receiver listens on 127.0.0.1.
        PHONEBRIDGE_WEBHOOK_ALLOW_PRIVATE="true",
    )


@pytest.fixture(scope="module")
def api_url(
    api_environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with running_api(api_environment, tmp_path_factory.mktemp("cwd")) as (url, _):
        yield url


@pytest.fixture(scope="module")
def generated(api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated package, imported from a folder of its own."""
    folder = tmp_path_factory.mktemp("generated")
    schema = folder / "openapi.json"
    schema.write_bytes(httpx.get(f"{api_url}/openapi.json", timeout=10).content)
    config = folder / "config.yaml"
    # No formatting after generation: ruff's output is not what is tested. A check job's CSV
    # body is bytes to a generated client (the generator knows no text/csv).
    config.write_text(
        f"project_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\npost_hooks: []\n"
        "content_type_overrides:\n  text/csv: application/octet-stream\n"
    )
    generated = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(schema),
            "--meta",
            "none",
            "--output-path",
            str(folder / PACKAGE),
            "--config",
            str(config),
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    # Every operation and model was generated (the generator skips what it cannot express).
    assert "Warning" not in generated.stdout + generated.stderr, generated.stdout + generated.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.startswith(PACKAGE)]:
            del sys.modules[name]


def operation(package: ModuleType, name: str) -> Any:
    """`package.api.<tag>.<name>` wherever its tag put it."""
    for tag in ("tasks", "events", "subscriptions", "checks", "stats", "operations", "hooks"):
        try:
            return importlib.import_module(f"{package.__name__}.api.{tag}.{name}")
        except ModuleNotFoundError:
            continue
    raise AssertionError(f"no generated operation {name}")


def model(package: ModuleType, name: str) -> Any:
    return getattr(importlib.import_module(f"{package.__name__}.models"), name)


def client_for(package: ModuleType, api_url: str, key: str) -> Any:
    return package.AuthenticatedClient(base_url=api_url, token=key, raise_on_unexpected_status=True)


def test_the_main_operations_work_through_a_generated_client(
    generated: ModuleType,
    api_url: str,
    api_environment: dict[str, str],
    fresh_sim: SimServer,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    client = client_for(generated, api_url, create_api_key(api_environment, tmp_path, "generated"))
    task_out, problem = model(generated, "TaskOut"), model(generated, "Problem")

    registered = operation(generated, "register_task").sync_detailed(
        client=client, body=model(generated, "TaskRegistration")(task_id="T-generated-1")
    )
    assert registered.status_code == 201
    assert isinstance(registered.parsed, task_out)
    assert registered.parsed.task_id == "T-generated-1"
    assert registered.parsed.state.value == "pending"

    read = operation(generated, "get_task").sync(task_id="T-generated-1", client=client)
    assert isinstance(read, task_out)
    assert read.task_id == "T-generated-1"
    page = operation(generated, "list_tasks").sync(client=client)
    assert [task.task_id for task in page.data] == ["T-generated-1"]

    fresh_sim.control.configure(submit_script="ring-0-60s")
    submitted = operation(generated, "submit_check").sync_detailed(
        client=client,
        body=model(generated, "CheckSubmission")(phone_number="+52 1 55 1234 5678"),
        idempotency_key="generated-1",
    )
    assert submitted.status_code == 201, submitted.content
    assert isinstance(submitted.parsed, task_out)
    assert submitted.parsed.phone_number_masked == "52******5678"

    subscription = operation(generated, "create_subscription").sync(
        client=client, body=model(generated, "SubscriptionCreate")(url=receiver.url())
    )
    assert subscription.secret.startswith("whsec_")
    listed = operation(generated, "list_subscriptions").sync(client=client)
    assert [item.id for item in listed.data] == [subscription.id]

    feed = operation(generated, "list_events").sync(client=client)
    assert feed.data == []
    assert feed.next_cursor is None

    missing = operation(generated, "get_task").sync_detailed(task_id="T-nowhere", client=client)
    assert missing.status_code == 404
    assert isinstance(missing.parsed, problem)
    assert (missing.parsed.status, missing.parsed.code) == (404, "NOT_FOUND")


def test_a_429_is_parsed_as_a_problem(
    generated: ModuleType, api_url: str, api_environment: dict[str, str], tmp_path: Path
) -> None:
    key = create_api_key(api_environment, tmp_path, "generated-limited")
    limited = run_command(
        api_environment,
        tmp_path,
        "api-key",
        "limits",
        "--client",
        "generated-limited",
        "--max-pending",
        "1",
    )
    assert limited.returncode == 0, limited.stderr
    client = client_for(generated, api_url, key)
    register = operation(generated, "register_task")
    registration = model(generated, "TaskRegistration")
    first = register.sync_detailed(client=client, body=registration(task_id="T-limited-1"))
    assert first.status_code == 201
    # The limit was set before the key's first call, so the API read it with the key.
    second = register.sync_detailed(client=client, body=registration(task_id="T-limited-2"))
    assert second.status_code == 429, second.content
    assert isinstance(second.parsed, model(generated, "Problem"))
    assert second.parsed.status == 429
    assert second.parsed.code

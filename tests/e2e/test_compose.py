"""docker-compose.yml, checked statically (no Docker engine here): it parses, every phonebridge
service runs a command the CLI has, and every PHONEBRIDGE_* variable it sets is a setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli import build_parser
from service.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = {name: s for name, s in SERVICES.items() if s.get("image", "").startswith("phonebridge")}


def test_compose_runs_the_contracts_processes_and_the_demo_profile() -> None:
    assert {"postgres", "redis", "migrate", "api", "worker", "scheduler"} <= set(SERVICES)
    for name in ("postgres", "redis", "migrate", "api", "worker", "scheduler"):
        assert "profiles" not in SERVICES[name], name
    for name in ("upstream-sim", "demo-receiver"):
        assert SERVICES[name]["profiles"] == ["demo"]


@pytest.mark.parametrize(
    ("server", "users"),
    [
        ("postgres", ("migrate", "api", "worker", "scheduler")),
        ("redis", ("api", "worker", "scheduler")),
    ],
)
def test_servers_have_healthchecks_that_their_users_wait_for(
    server: str, users: tuple[str, ...]
) -> None:
    assert SERVICES[server]["healthcheck"]["test"]
    for service in users:
        assert SERVICES[service]["depends_on"][server]["condition"] == "service_healthy"


def test_migrate_runs_once_before_the_long_running_processes() -> None:
    assert SERVICES["migrate"]["restart"] == "no"
    for service in ("api", "worker", "scheduler"):
        condition = SERVICES[service]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_phonebridge_service_runs_a_command_the_cli_has(name: str) -> None:
    command = OURS[name]["command"]
    assert isinstance(command, list)
    args = build_parser().parse_args(command)  # argparse exits on an unknown command or option
    assert args.command == command[0]


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_variable_a_service_sets_is_a_setting(name: str) -> None:
    environment = OURS[name]["environment"]
    assert isinstance(environment, dict)
    variables = [key for key in environment if key.startswith(ENV_PREFIX)]
    assert variables
    for variable in variables:
        field = variable.removeprefix(ENV_PREFIX).lower()
        assert field in Settings.model_fields, variable


def test_the_image_is_python_3_11_slim_with_the_package_installed() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile
    assert 'ENTRYPOINT ["phonebridge"]' in dockerfile
    for service in OURS.values():
        assert service["build"] == "."

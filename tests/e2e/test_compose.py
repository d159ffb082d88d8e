"""docker-compose.yml, checked statically (no Docker engine here): it parses, every phonebridge
service runs a command the CLI has, every PHONEBRIDGE_* variable it sets is a setting, and the
recipe its header documents gives every service valid settings that survive a restart."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli import build_parser
from service.config import COMMAND_NEEDS, ENV_PREFIX, ConfigError, Settings, build_settings

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
    # the lock's versions, hash-checked, not a fresh resolve; then the package alone
    assert "pip install --require-hashes -r requirements/runtime.txt" in dockerfile
    assert "pip install --no-deps ." in dockerfile
    assert 'ENTRYPOINT ["phonebridge"]' in dockerfile
    for service in OURS.values():
        assert service["build"] == "."


# --- the header's recipe, run on paper -----------------------------------------------------------
# Docker is not available where the tests run, so the recipe is checked the way docker compose
# would read it: the header's commands, the .env they make, the `${...}` interpolation of the
# services' environment, then the settings each process would validate at start.

COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
ENV_EXAMPLE = ROOT / ".env.example"
# What `openssl rand -hex 32` prints: 64 hex characters.
GENERATED_KEY = "0f" * 32
# What the user types into .env: the header asks for the account's credentials.
USER_CREDENTIALS = {
    "PHONEBRIDGE_UPSTREAM_API_ID": "account-api-id",
    "PHONEBRIDGE_UPSTREAM_API_SECRET": "account-api-secret",
}
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[?-])([^}]*))?\}")


class MissingVariable(Exception):
    pass


def header_commands() -> list[str]:
    """The commands the header shows (indented comment lines), continuation lines joined."""
    commands: list[str] = []
    pending = ""
    for line in COMPOSE_TEXT.splitlines():
        if not line.startswith("#   "):
            continue
        text = line.removeprefix("#   ").strip()
        if text.endswith("\\"):
            pending += text.removesuffix("\\")
            continue
        commands.append(pending + text)
        pending = ""
    return commands


def compose_commands() -> list[tuple[dict[str, str], list[str]]]:
    """Each `docker compose ...` command of the header: the variables set on its line, and the
    arguments after `docker compose`."""
    found = []
    for command in header_commands():
        words = shlex.split(command)
        if "docker" not in words:
            continue
        at = words.index("docker")
        assert words[at + 1] == "compose", command
        assignments = dict(word.split("=", 1) for word in words[:at])
        found.append((assignments, words[at + 2 :]))
    return found


def dotenv(path: Path) -> dict[str, str]:
    variables = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            variables[name.strip()] = value.strip()
    return variables


def made_dotenv() -> dict[str, str]:
    """.env as the header's first command makes it (with the key openssl would print)."""
    return {**dotenv(ENV_EXAMPLE), "PHONEBRIDGE_SECRET_KEY": GENERATED_KEY}


def interpolate(value: str, variables: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        current = variables.get(name)
        unset = current is None or (
            operator is not None and operator.startswith(":") and not current
        )
        if operator in ("?", ":?") and unset:
            raise MissingVariable(f"{name}: {argument}")
        if operator in ("-", ":-") and unset:
            return argument
        return current or ""

    return INTERPOLATION.sub(substitute, value)


def service_environment(name: str, variables: dict[str, str]) -> dict[str, str]:
    """The container's PHONEBRIDGE_* environment: values interpolated, keys without a value taken
    from the shell or .env when set there (and left out otherwise)."""
    environment: dict[str, str] = {}
    for key, value in OURS[name]["environment"].items():
        if value is None:
            if key in variables:
                environment[key] = variables[key]
        else:
            environment[key] = interpolate(str(value), variables)
    return environment


@pytest.fixture
def process_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[[dict[str, str], str], None]:
    """Checks the settings a container's process reads at start, as `phonebridge` would: valid,
    and holding what its command needs; ConfigError otherwise."""

    def check(environment: dict[str, str], command: str) -> None:
        for variable in [v for v in os.environ if v.startswith(ENV_PREFIX)]:
            monkeypatch.delenv(variable)
        for variable, value in environment.items():
            monkeypatch.setenv(variable, value)
        monkeypatch.chdir(tmp_path)  # the image has no .env of its own
        settings = build_settings()
        settings.check_needs(COMMAND_NEEDS.get(command, frozenset()), command)

    return check


def recipe_variables(recipe: str) -> dict[str, str]:
    """What docker compose sees for each documented way of running it: .env as the header makes
    it and the user fills it in, with the variables of the command's own line on top."""
    variables = {**made_dotenv(), **USER_CREDENTIALS}
    for assignments, arguments in compose_commands():
        if recipe == "demo" and "--profile" in arguments:
            variables.update(assignments)
    return variables


def services_of(recipe: str) -> list[str]:
    return sorted(
        name for name in OURS if recipe == "demo" or "demo" not in OURS[name].get("profiles", [])
    )


def test_the_header_makes_the_secret_key_once_into_env_which_git_and_docker_ignore() -> None:
    commands = header_commands()
    makes_env = [c for c in commands if "openssl rand -hex 32" in c]
    assert len(makes_env) == 1, commands
    # Guarded: run again, it keeps the key that encrypted the stored webhook secrets.
    assert makes_env[0].startswith("[ -f .env ] ||")
    assert "cp .env.example .env" in makes_env[0]
    assert '"PHONEBRIDGE_SECRET_KEY=$(openssl rand -hex 32)" >> .env' in makes_env[0]
    # No `docker compose` line makes a key of its own (a new one at each `up`).
    assert all("openssl" not in c for c in commands if "docker compose" in c)
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()
    assert "PHONEBRIDGE_SECRET_KEY" not in dotenv(ENV_EXAMPLE)


def test_every_documented_compose_command_runs_a_service_and_command_that_exist() -> None:
    commands = compose_commands()
    verbs = {word for _, arguments in commands for word in arguments if word in ("up", "run")}
    assert verbs == {"up", "run"}
    for assignments, arguments in commands:
        for variable in assignments:
            assert variable.removeprefix(ENV_PREFIX).lower() in Settings.model_fields, variable
        if "--profile" in arguments:
            profile = arguments[arguments.index("--profile") + 1]
            assert any(profile in s.get("profiles", []) for s in SERVICES.values()), profile
        if arguments[0] == "run":
            rest = [word for word in arguments[1:] if word != "--rm"]
            service, command = rest[0], rest[1:]
            assert service in OURS, service
            args = build_parser().parse_args(command)  # argparse exits on what it does not know
            assert args.command == command[0]


@pytest.mark.parametrize(
    ("recipe", "name"),
    [(recipe, name) for recipe in ("production", "demo") for name in services_of(recipe)],
)
def test_each_service_gets_valid_settings_and_what_its_command_needs_from_the_recipe(
    recipe: str, name: str, process_environment: Callable[[dict[str, str], str], None]
) -> None:
    environment = service_environment(name, recipe_variables(recipe))
    process_environment(environment, OURS[name]["command"][0])
    if recipe == "demo":
        assert environment["PHONEBRIDGE_UPSTREAM_BASE_URL"] == "http://upstream-sim:8099"
    assert environment["PHONEBRIDGE_SECRET_KEY"] == GENERATED_KEY


def test_every_service_requires_the_secret_key_so_none_starts_with_another() -> None:
    variables = {k: v for k, v in made_dotenv().items() if k != "PHONEBRIDGE_SECRET_KEY"}
    for name in OURS:
        with pytest.raises(MissingVariable, match="PHONEBRIDGE_SECRET_KEY"):
            service_environment(name, variables)


def test_without_credentials_in_env_only_the_worker_refuses_naming_them(
    process_environment: Callable[[dict[str, str], str], None],
) -> None:
    variables = made_dotenv()  # .env as copied, credentials not filled in yet
    for name in services_of("production"):
        command = OURS[name]["command"][0]
        if command == "worker":
            with pytest.raises(ConfigError, match="PHONEBRIDGE_UPSTREAM_API_ID and"):
                process_environment(service_environment(name, variables), command)
        else:
            process_environment(service_environment(name, variables), command)


@pytest.mark.parametrize("name", sorted(OURS))
def test_a_key_some_process_would_refuse_is_refused_by_every_service_at_start(
    name: str, process_environment: Callable[[dict[str, str], str], None]
) -> None:
    # The old demo recipe's key: the worker exited 2 while the API started and answered 500.
    variables = {**made_dotenv(), **USER_CREDENTIALS, "PHONEBRIDGE_SECRET_KEY": "demo-only-key"}
    with pytest.raises(ConfigError, match="PHONEBRIDGE_SECRET_KEY"):
        process_environment(service_environment(name, variables), OURS[name]["command"][0])

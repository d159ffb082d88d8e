"""Settings: defaults, parsing, and the one-line refusal of unusable values, both in-process and
from the real `phonebridge` command (which must exit non-zero naming the variable, and never
print a secret's value)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import COMMAND_NEEDS, ConfigError, Need, Settings, build_settings

PHONEBRIDGE = str(Path(sys.executable).with_name("phonebridge"))
SECRET = "s3cr3t-Value-that-must-not-leak"


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PHONEBRIDGE_")}
    return subprocess.run(
        [PHONEBRIDGE, *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_defaults_follow_the_contract(clean_env: Path) -> None:
    settings = Settings()
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.upstream_base_url == "https://cloudapi.mexico.accuauth.com"
    assert settings.upstream_timeout_s == 10
    assert settings.upstream_max_rps == 50
    assert settings.task_ttl_s == 86400
    assert settings.poll_initial_s == 2
    assert settings.poll_max_s == 300
    assert settings.webhook_timeout_s == 15
    assert settings.webhook_retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert settings.webhook_allow_private is False
    assert settings.retention_days == 30
    assert settings.check_countries == ("MX", "CO")
    assert settings.data_dir == Path("./.phonebridge")


def test_values_come_from_the_environment_and_a_dotenv_file(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".env").write_text("PHONEBRIDGE_TASK_TTL_S=60\nPHONEBRIDGE_POLL_MAX_S=30\n")
    monkeypatch.setenv("PHONEBRIDGE_POLL_MAX_S", "45.5")
    monkeypatch.setenv("PHONEBRIDGE_WEBHOOK_RETRY_SCHEDULE", "1, 2.5,3")
    monkeypatch.setenv("PHONEBRIDGE_WEBHOOK_ALLOW_PRIVATE", "true")
    settings = build_settings()
    assert settings.task_ttl_s == 60
    assert settings.poll_max_s == 45.5  # the environment wins over .env
    assert settings.webhook_retry_schedule == (1, 2.5, 3)
    assert settings.webhook_allow_private is True


def test_the_sqlalchemy_url_uses_psycopg(clean_env: Path) -> None:
    settings = build_settings(database_url="postgresql://u@h:5432/d")
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@h:5432/d"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POLL_MAX_S", "abc"),
        ("POLL_MAX_S", "-1"),
        ("POLL_INITIAL_S", "0"),
        ("TASK_TTL_S", "1 day"),
        ("UPSTREAM_MAX_RPS", ""),
        ("UPSTREAM_TIMEOUT_S", "nan?"),
        ("WEBHOOK_RETRY_SCHEDULE", "5,,300"),
        ("WEBHOOK_RETRY_SCHEDULE", "5,-1"),
        ("WEBHOOK_ALLOW_PRIVATE", "perhaps"),
        ("DATABASE_URL", "mysql://root:" + SECRET + "@db/x"),
        ("REDIS_URL", "http://:" + SECRET + "@redis"),
        ("UPSTREAM_BASE_URL", "ftp://" + SECRET),
        ("CLIENT_MAX_CHECKS_PER_DAY", "-1"),
        ("CLIENT_MAX_CHECKS_PER_DAY", "many"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable_without_its_value(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(f"PHONEBRIDGE_{variable}", value)
    monkeypatch.setenv("PHONEBRIDGE_UPSTREAM_API_SECRET", SECRET)
    with pytest.raises(ConfigError) as raised:
        build_settings()
    message = str(raised.value)
    assert f"PHONEBRIDGE_{variable}" in message
    assert "\n" not in message
    assert SECRET not in message


def test_backoff_bounds_must_be_ordered(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHONEBRIDGE_POLL_INITIAL_S", "10")
    monkeypatch.setenv("PHONEBRIDGE_POLL_MAX_S", "5")
    with pytest.raises(ConfigError, match="PHONEBRIDGE_POLL_MAX_S"):
        build_settings()


def test_secrets_do_not_show_in_a_repr(clean_env: Path) -> None:
    settings = build_settings(upstream_api_secret=SECRET, secret_key=SECRET)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())


# --- the real command -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "variable"),
    [
        (["migrate"], "PHONEBRIDGE_DATABASE_URL"),
        (["api-key", "create", "--name", "x"], "PHONEBRIDGE_DATABASE_URL"),
        (["api", "--port", "1"], "PHONEBRIDGE_DATABASE_URL"),
    ],
)
def test_cli_without_a_database_url_exits_with_one_line(
    tmp_path: Path, args: list[str], variable: str
) -> None:
    result = run_cli(args, {"PHONEBRIDGE_UPSTREAM_API_SECRET": SECRET}, tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "is not set" in lines[0]
    assert SECRET not in result.stderr + result.stdout


def test_cli_api_without_a_redis_url_exits_with_one_line(tmp_path: Path) -> None:
    result = run_cli(
        ["api", "--port", "1"], {"PHONEBRIDGE_DATABASE_URL": "postgresql://127.0.0.1:1/x"}, tmp_path
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "PHONEBRIDGE_REDIS_URL" in lines[0]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PHONEBRIDGE_POLL_MAX_S", "abc"),
        ("PHONEBRIDGE_TASK_TTL_S", "-5"),
        ("PHONEBRIDGE_CHECK_COUNTRIES", "MX,ZZ"),
        ("PHONEBRIDGE_WEBHOOK_RETRY_SCHEDULE", "soon"),
        ("PHONEBRIDGE_DATABASE_URL", f"mysql://root:{SECRET}@db/x"),
    ],
)
def test_cli_with_a_bad_value_exits_with_one_line_naming_it(
    tmp_path: Path, variable: str, value: str
) -> None:
    env = {
        "PHONEBRIDGE_DATABASE_URL": "postgresql://127.0.0.1:1/x",
        "PHONEBRIDGE_REDIS_URL": "redis://127.0.0.1:1/0",
        "PHONEBRIDGE_UPSTREAM_API_SECRET": SECRET,
        variable: value,
    }
    result = run_cli(["migrate"], env, tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert SECRET not in result.stderr + result.stdout


def test_cli_refuses_an_empty_client_name(tmp_path: Path, database_url: str) -> None:
    result = run_cli(
        ["api-key", "create", "--name", "  "],
        {"PHONEBRIDGE_DATABASE_URL": database_url, "PHONEBRIDGE_REDIS_URL": "redis://x:1/0"},
        tmp_path,
    )
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--name" in result.stderr


@pytest.mark.parametrize(
    "url", ["postgres://u@h:5432/d", "postgresql://u@h:5432/d", "postgresql+psycopg://u@h:5432/d"]
)
def test_postgres_and_postgresql_urls_are_both_accepted(clean_env: Path, url: str) -> None:
    assert build_settings(database_url=url).sqlalchemy_url == "postgresql+psycopg://u@h:5432/d"


def test_a_secret_key_shorter_than_16_characters_is_refused_with_the_settings(
    clean_env: Path,
) -> None:
    with pytest.raises(ConfigError, match="PHONEBRIDGE_SECRET_KEY: must be at least 16") as raised:
        build_settings(secret_key="demo-only-key")
    assert "demo-only-key" not in str(raised.value)
    assert build_settings(secret_key="x" * 16).secret_key is not None


@pytest.mark.parametrize(
    ("upstream_api_id", "upstream_api_secret", "named"),
    [
        (None, None, "PHONEBRIDGE_UPSTREAM_API_ID and PHONEBRIDGE_UPSTREAM_API_SECRET are not set"),
        ("", "secret", "PHONEBRIDGE_UPSTREAM_API_ID is not set"),
        ("id", None, "PHONEBRIDGE_UPSTREAM_API_SECRET is not set"),
    ],
)
def test_missing_upstream_credentials_are_named_with_what_to_do(
    clean_env: Path, upstream_api_id: str | None, upstream_api_secret: str | None, named: str
) -> None:
    settings = build_settings(
        upstream_api_id=upstream_api_id, upstream_api_secret=upstream_api_secret
    )
    with pytest.raises(ConfigError) as raised:
        settings.check_needs(COMMAND_NEEDS["worker"] - {Need.DATABASE, Need.REDIS}, "worker")
    assert str(raised.value).startswith(named)
    assert "phonebridge demo" in str(raised.value)


def test_commands_that_poll_upstream_are_the_only_ones_needing_credentials() -> None:
    needing = {c for c, needs in COMMAND_NEEDS.items() if Need.UPSTREAM_CREDENTIALS in needs}
    assert needing == {"worker"}


@pytest.mark.parametrize(
    "args",
    [
        ["api", "--port", "1"],
        ["migrate"],
        ["worker"],
        ["scheduler"],
        ["upstream-sim", "--port", "1"],
    ],
)
def test_cli_refuses_a_short_secret_key_at_start_whatever_the_command(
    tmp_path: Path, args: list[str]
) -> None:
    # The API used to start with it and answer 500 on the first subscription.
    env = {
        "PHONEBRIDGE_DATABASE_URL": "postgresql://127.0.0.1:1/x",
        "PHONEBRIDGE_REDIS_URL": "redis://127.0.0.1:1/0",
        "PHONEBRIDGE_SECRET_KEY": "demo-only-key",
    }
    result = run_cli(args, env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "PHONEBRIDGE_SECRET_KEY" in lines[0]
    assert "demo-only-key" not in result.stderr


def test_cli_worker_without_upstream_credentials_exits_with_one_line_naming_them(
    tmp_path: Path,
) -> None:
    env = {
        "PHONEBRIDGE_DATABASE_URL": "postgresql://127.0.0.1:1/x",
        "PHONEBRIDGE_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    result = run_cli(["worker"], env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "PHONEBRIDGE_UPSTREAM_API_ID and PHONEBRIDGE_UPSTREAM_API_SECRET" in lines[0]


def test_cli_api_key_create_without_a_database_prints_nothing_on_stdout(tmp_path: Path) -> None:
    # `KEY=$(phonebridge api-key create ...)` in a script must fail, not hold an empty key.
    result = run_cli(["api-key", "create", "--name", "x"], {}, tmp_path)
    assert result.returncode != 0
    assert result.stdout == ""


def test_checks_and_hints_settings_have_their_defaults(clean_env: Path) -> None:
    settings = Settings()
    # Daily check budgets are off unless set.
    assert settings.client_max_checks_per_day == 0
    assert settings.public_url is None
    assert settings.hinted_poll_initial_s == 30
    assert settings.hint_min_interval_s == 2


def test_check_countries_are_read_as_iso_codes(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHONEBRIDGE_CHECK_COUNTRIES", "co, mx ,US")
    assert build_settings().check_countries == ("CO", "MX", "US")
    assert build_settings(check_countries=("mx",)).check_countries == ("MX",)


def test_the_public_url_is_kept_without_a_trailing_slash(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHONEBRIDGE_PUBLIC_URL", "https://pb.example.com/base/")
    assert build_settings().public_url == "https://pb.example.com/base"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PUBLIC_URL", "ftp://pb.example.com"),
        ("PUBLIC_URL", "pb.example.com"),
        ("PUBLIC_URL", "https://user:pw@pb.example.com"),
        ("PUBLIC_URL", "https://pb.example.com/?x=1"),
        ("HINTED_POLL_INITIAL_S", "0"),
        ("HINTED_POLL_INITIAL_S", "soon"),
        ("HINT_MIN_INTERVAL_S", "-1"),
        ("CALLBACK_LOSS_TOLERANCE", "1.5"),
        ("CALLBACK_LOSS_TOLERANCE", "-0.1"),
        ("CALLBACK_LOSS_TOLERANCE", "some"),
        ("CHECK_COUNTRIES", ""),
        ("CHECK_COUNTRIES", "MX,,CO"),
        ("CHECK_COUNTRIES", "Mexico"),
        ("CHECK_COUNTRIES", "MX,XX"),
    ],
)
def test_a_bad_checks_or_hints_setting_is_refused_at_start(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(f"PHONEBRIDGE_{variable}", value)
    with pytest.raises(ConfigError, match=f"PHONEBRIDGE_{variable}"):
        build_settings()

"""`phonebridge api-key limits --max-checks-per-day` (service/admin_commands.py) on the real
store: a client's daily check budget set, shown beside its intake limits, kept when left out,
`off` for no limit and `default` to follow PHONEBRIDGE_CLIENT_MAX_CHECKS_PER_DAY."""

from __future__ import annotations

import argparse
import asyncio
import secrets

import pytest

from service.admin_commands import add_admin_commands
from service.config import Settings
from service.features.keys import create_client_and_key
from tests.support.settings import make_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phonebridge")
    add_admin_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def run_limits(settings: Settings, capsys: pytest.CaptureFixture[str], *options: str) -> str:
    args = build_parser().parse_args(["api-key", "limits", *options])
    assert args.handler(args, settings) == 0
    return capsys.readouterr().out


def test_a_clients_daily_check_budget_is_set_kept_lifted_and_given_back_to_the_setting(
    database_url: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(database_url, redis_url, client_max_checks_per_day=500)
    name = f"budget-{secrets.token_hex(4)}"
    asyncio.run(create_client_and_key(settings, name))

    shown = run_limits(settings, capsys, "--client", name)
    assert "max checks per day the setting (500)" in shown

    shown = run_limits(settings, capsys, "--client", name, "--max-checks-per-day", "20")
    assert "max checks per day 20" in shown
    # Another limit changed: the budget keeps its value.
    shown = run_limits(settings, capsys, "--client", name, "--max-rps", "5")
    assert "max rps 5" in shown
    assert "max checks per day 20" in shown

    shown = run_limits(settings, capsys, "--client", name, "--max-checks-per-day", "off")
    assert "max checks per day off" in shown
    shown = run_limits(settings, capsys, "--client", name, "--max-checks-per-day", "default")
    assert "max checks per day the setting (500)" in shown


@pytest.mark.parametrize("value", ["0", "-3", "lots"])
def test_a_budget_that_is_not_a_whole_number_above_zero_off_or_default_is_refused(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["api-key", "limits", "--client", "x", "--max-checks-per-day", value]
        )
    assert "--max-checks-per-day" in capsys.readouterr().err

"""The `phonebridge api-key` and `secret-key` commands: an operator's clients, API keys, intake
limits and callback URLs, and the reseal that finishes a rotation of PHONEBRIDGE_SECRET_KEY. Each
is a service.features call and what it prints (imported when run: `phonebridge --help` builds
every parser)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from service.cliargs import lag_target_value, limit_value, positive_int
from service.config import Settings


def _api_key_create(args: argparse.Namespace, settings: Settings) -> int:
    from service.features.keys import create_client_and_key

    key = asyncio.run(create_client_and_key(settings, args.name))
    # The key alone on stdout, so `KEY=$(phonebridge api-key create ...)` holds just the key.
    print(f"created client {args.name!r}; its API key (shown once, store it now):", file=sys.stderr)
    print(key, flush=True)
    return 0


def _api_key_add(args: argparse.Namespace, settings: Settings) -> int:
    from service.features.keys import add_key

    key_id, key = asyncio.run(add_key(settings, args.client))
    print(
        f"added API key {key_id} to client {args.client!r} (shown once, store it now):",
        file=sys.stderr,
    )
    print(key, flush=True)
    return 0


def _api_key_list(args: argparse.Namespace, settings: Settings) -> int:
    from service.features.keys import KEY_LIST_HEADER, format_key_line, list_keys

    rows = asyncio.run(list_keys(settings, args.client))
    print(KEY_LIST_HEADER)
    for row in rows:
        print(format_key_line(row))
    return 0


def _api_key_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from service.features.keys import revoke_key

    revoked_at = asyncio.run(revoke_key(settings, args.key_id))
    print(
        f"API key {args.key_id} revoked at {revoked_at.isoformat()}; "
        "running API processes refuse it within 5 s"
    )
    return 0


def _api_key_rotate_callback(args: argparse.Namespace, settings: Settings) -> int:
    from service.checks.callback_hints import TOKEN_TTL_S
    from service.features.keys import rotate_callback

    client, old_until = asyncio.run(rotate_callback(settings, args.client))
    print(
        f"client {client.id} {client.name!r}: new callback URL (GET /v1/callback-url shows it "
        f"within {TOKEN_TTL_S:g} s); the old one keeps working until {old_until.isoformat()}"
    )
    return 0


def _secret_key_reseal(args: argparse.Namespace, settings: Settings) -> int:
    from service.features.reseal import reseal_kept_secrets

    report = asyncio.run(reseal_kept_secrets(settings))
    for name, counts in (
        ("webhook secrets", report.webhook_secrets),
        ("re-check numbers", report.recheck_numbers),
        ("job item numbers", report.job_item_numbers),
    ):
        print(
            f"{name}: {counts.resealed} resealed under PHONEBRIDGE_SECRET_KEY, {counts.current} "
            f"already were, {counts.changed} changed meanwhile (run again to take them)"
        )
    if report.unreadable:
        print(
            f"phonebridge: {len(report.unreadable)} open under no listed key (add the key that "
            "sealed them to PHONEBRIDGE_SECRET_KEY_PREVIOUS and run again): "
            + "; ".join(report.unreadable),
            file=sys.stderr,
        )
        return 1
    return 0


def _api_key_limits(args: argparse.Namespace, settings: Settings) -> int:
    from service.features.keys import ClientLimits, set_limits

    named = ("max_rps", "max_pending", "max_checks_per_day", "poll_target_p95_s")
    changes = ClientLimits(**{name: getattr(args, name) for name in named if name in args})
    current = asyncio.run(set_limits(settings, args.client, changes))

    def shown(value: int | None, setting: int) -> str:
        if value is None:
            return f"the setting ({'off' if setting == 0 else setting})"
        return "off" if value == 0 else str(value)

    target = current.poll_target_p95_s
    setting = settings.poll_target_p95_s
    print(
        f"client {current.id} {current.name!r}: max rps "
        f"{shown(current.max_rps, settings.client_max_rps)}, max pending "
        f"{shown(current.max_pending, settings.client_max_pending)}, max checks per day "
        f"{shown(current.max_checks_per_day, settings.client_max_checks_per_day)}, poll target p95 "
        + (
            f"{target:g} s"
            if target is not None
            else f"the setting ({'off' if setting is None else f'{setting:g} s'})"
        )
    )
    return 0


def add_admin_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `api-key` and `secret-key` to the `phonebridge` command's subcommands."""
    p = commands.add_parser("api-key", help="manage API keys")
    key_commands = p.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create a client and its API key")
    create.add_argument("--name", required=True)
    create.set_defaults(handler=_api_key_create)
    add = key_commands.add_parser("add", help="another API key for an existing client")
    add.add_argument("--client", required=True, metavar="NAME_OR_ID")
    add.set_defaults(handler=_api_key_add)
    listing = key_commands.add_parser("list", help="the API keys (never the keys themselves)")
    listing.add_argument("--client", metavar="NAME_OR_ID")
    listing.set_defaults(handler=_api_key_list)
    revoke = key_commands.add_parser("revoke", help="revoke an API key (401 within 5 s)")
    revoke.add_argument("key_id", type=positive_int, metavar="KEY_ID")
    revoke.set_defaults(handler=_api_key_revoke)
    limits = key_commands.add_parser(
        "limits",
        help="set a client's own intake limits and daily check budget (a number, `off`, or "
        "`default` for the setting)",
    )
    limits.add_argument("--client", required=True, metavar="NAME_OR_ID")
    # Left out, a limit keeps its current value.
    limits.add_argument("--max-rps", type=limit_value, default=argparse.SUPPRESS, metavar="RPS")
    limits.add_argument(
        "--max-pending", type=limit_value, default=argparse.SUPPRESS, metavar="TASKS"
    )
    limits.add_argument(
        "--max-checks-per-day", type=limit_value, default=argparse.SUPPRESS, metavar="CHECKS"
    )
    limits.add_argument(
        "--poll-target-p95-s",
        type=lag_target_value,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="this client's p95 detection-lag target for the adaptive schedule (`default`: "
        "PHONEBRIDGE_POLL_TARGET_P95_S)",
    )
    limits.set_defaults(handler=_api_key_limits)
    rotate = key_commands.add_parser(
        "rotate-callback",
        help="give a client a new upstream callback URL (the old one works for the task TTL)",
    )
    rotate.add_argument("--client", required=True, metavar="NAME_OR_ID")
    rotate.set_defaults(handler=_api_key_rotate_callback)

    p = commands.add_parser("secret-key", help="finish a rotation of PHONEBRIDGE_SECRET_KEY")
    secret_commands = p.add_subparsers(dest="secret_command", required=True, metavar="ACTION")
    reseal = secret_commands.add_parser(
        "reseal",
        help="re-encrypt the stored webhook secrets and the numbers kept for re-checks and "
        "check jobs under the current PHONEBRIDGE_SECRET_KEY",
    )
    reseal.set_defaults(handler=_secret_key_reseal)

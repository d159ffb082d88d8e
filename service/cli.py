"""The `phonebridge` command. Each subcommand validates its configuration first and exits
non-zero with a one-line reason when it is unusable."""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import sys
from collections.abc import Callable, Collection, Sequence

from service.config import (
    COMMAND_NEEDS,
    ConfigError,
    Need,
    Settings,
    exit_with,
    get_settings,
)
from service.logs import configure_logging

Command = Callable[[argparse.Namespace, Settings], int]


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    # Checked before Alembic is imported: its import logs, and the refusal must be one line.
    url = settings.sqlalchemy_url
    from service.store.migrate import upgrade_to_head

    upgrade_to_head(url)
    print("database schema is up to date")
    return 0


def _api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from service.api.protocol import GuardedHttpProtocol, HttpLimits

    settings.require_database_url()
    settings.require_redis_url()
    uvicorn.run(
        "service.api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        # Each worker is a whole API process (its own pools and key cache) on the shared port:
        # one Python process serves about one core's worth of requests.
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        http=functools.partial(  # type: ignore[arg-type]  # uvicorn only calls it
            GuardedHttpProtocol,
            limits=HttpLimits(
                header_timeout_s=settings.http_header_timeout_s,
                body_idle_timeout_s=settings.http_body_timeout_s,
            ),
        ),
    )
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from workers.app import run_worker

    return run_worker(settings, args.concurrency)


def _scheduler(args: argparse.Namespace, settings: Settings) -> int:
    from workers.scheduler import run_scheduler

    return run_scheduler(settings)


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


def _limit_value(text: str) -> int | None:
    if text == "default":
        return None
    if text == "off":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number, `off` or `default`, not {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (or `off`), not {text!r}")
    return value


def _lag_target_value(text: str) -> float | None:
    if text == "default":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be seconds or `default`, not {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text!r}")
    return value


def _upstream_sim(args: argparse.Namespace, settings: Settings) -> int:
    from service.sim.command import run

    return run(args)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from service.run.up import run_up

    return run_up(args, settings)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from service.run.demo import run_demo

    return run_demo(args, settings)


def _demo_receiver(args: argparse.Namespace, settings: Settings) -> int:
    from service.run.receiver import run_receiver

    return run_receiver(args)


def _check_file(args: argparse.Namespace, settings: Settings) -> int:
    from service.client.check_file import API_KEY_VARIABLE, CheckFile, run_check_file

    request = CheckFile(file=args.file, out=args.out, url=args.url, job_id=args.job)
    return run_check_file(request, os.environ.get(API_KEY_VARIABLE))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phonebridge",
        description="Polls AccuAuth phone-check tasks and pushes their results as webhooks.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("migrate", help="bring the database schema to the latest version")
    p.set_defaults(handler=_migrate)

    p = commands.add_parser("api", help="serve the REST API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--workers", type=_positive_int, default=1, help="API processes sharing the port"
    )
    p.set_defaults(handler=_api)

    p = commands.add_parser("worker", help="run a worker (polls upstream, delivers webhooks)")
    p.add_argument("--concurrency", type=int, default=None, help="batches in flight at once")
    p.set_defaults(handler=_worker)

    p = commands.add_parser("scheduler", help="run the dispatcher that finds due work")
    p.set_defaults(handler=_scheduler)

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
    revoke.add_argument("key_id", type=_positive_int, metavar="KEY_ID")
    revoke.set_defaults(handler=_api_key_revoke)
    limits = key_commands.add_parser(
        "limits",
        help="set a client's own intake limits and daily check budget (a number, `off`, or "
        "`default` for the setting)",
    )
    limits.add_argument("--client", required=True, metavar="NAME_OR_ID")
    # Left out, a limit keeps its current value.
    limits.add_argument("--max-rps", type=_limit_value, default=argparse.SUPPRESS, metavar="RPS")
    limits.add_argument(
        "--max-pending", type=_limit_value, default=argparse.SUPPRESS, metavar="TASKS"
    )
    limits.add_argument(
        "--max-checks-per-day", type=_limit_value, default=argparse.SUPPRESS, metavar="CHECKS"
    )
    limits.add_argument(
        "--poll-target-p95-s",
        type=_lag_target_value,
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

    from service.sim.command import configure as configure_sim

    p = commands.add_parser("upstream-sim", help="serve a local simulator of AccuAuth")
    configure_sim(p)
    p.set_defaults(handler=_upstream_sim)

    from service.run.options import configure_demo, configure_demo_receiver, configure_up

    p = commands.add_parser(
        "up", help="run migrate, the API, a worker and the scheduler together until Ctrl-C"
    )
    configure_up(p)
    p.set_defaults(handler=_up)

    p = commands.add_parser("demo", help="`up` plus the simulator, a receiver and sample tasks")
    configure_demo(p)
    p.set_defaults(handler=_demo)

    p = commands.add_parser("demo-receiver", help="serve a signature-checking webhook receiver")
    configure_demo_receiver(p)
    p.set_defaults(handler=_demo_receiver)

    from service.client.options import configure_check_file

    p = commands.add_parser(
        "check-file",
        help="check every number of a CSV as one check job, with a progress bar, and write "
        "its results CSV (API key in PHONEBRIDGE_API_KEY)",
    )
    configure_check_file(p)
    p.set_defaults(handler=_check_file)
    return parser


def with_running_servers(settings: Settings, needs: Collection[Need]) -> Settings:
    """The settings with the URLs of the embedded servers of an `up` or `demo` running on the
    same PHONEBRIDGE_DATA_DIR filled in where the command needs them and they are unset; said on
    stderr (stdout may be captured: an API key)."""
    from service.run.datadir import DATABASE_URL_VARIABLE, REDIS_URL_VARIABLE, running_servers

    wanted = set()
    if Need.DATABASE in needs and settings.database_url is None:
        wanted.add(DATABASE_URL_VARIABLE)
    if Need.REDIS in needs and settings.redis_url is None:
        wanted.add(REDIS_URL_VARIABLE)
    running = running_servers(settings.data_dir) if wanted else None
    found = {} if running is None else {k: v for k, v in running.urls.items() if k in wanted}
    if running is None or not found:
        return settings
    # Through the environment: an API process's app factory reads the settings again.
    os.environ.update(found)
    get_settings.cache_clear()
    print(
        f"phonebridge: {' and '.join(sorted(found))} not set; using the embedded servers of "
        f"the `phonebridge up` or `demo` (pid {running.pid}) running on "
        f"{settings.data_dir.resolve()}",
        file=sys.stderr,
        flush=True,
    )
    return get_settings()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Command = args.handler
    try:
        needs = COMMAND_NEEDS.get(args.command, frozenset())
        settings = with_running_servers(get_settings(), needs)
        settings.check_needs(needs, f"`phonebridge {args.command}`")
        configure_logging(settings.log_level)
        return handler(args, settings)
    except ConfigError as error:
        exit_with(error)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

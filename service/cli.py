"""The `phonebridge` command. Each subcommand validates its configuration first and exits
non-zero with a one-line reason when it is unusable."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Collection, Sequence

from service.admin_commands import add_admin_commands
from service.cliargs import positive_int
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
    p.add_argument("--workers", type=positive_int, default=1, help="API processes sharing the port")
    p.set_defaults(handler=_api)

    p = commands.add_parser("worker", help="run a worker (polls upstream, delivers webhooks)")
    p.add_argument("--concurrency", type=int, default=None, help="batches in flight at once")
    p.set_defaults(handler=_worker)

    p = commands.add_parser("scheduler", help="run the dispatcher that finds due work")
    p.set_defaults(handler=_scheduler)

    add_admin_commands(commands)

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

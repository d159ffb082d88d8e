"""Command-line options of `phonebridge demo` and `phonebridge demo-receiver`, in a module light
enough for `phonebridge --help`."""

from __future__ import annotations

import argparse

from service.cliargs import positive_float

DEFAULT_DEMO_TASK_TTL_S = 30.0
DEFAULT_RECEIVER_PORT = 8098


def configure_up(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run `phonebridge migrate`, then the API, a worker and the scheduler as child processes "
        "until Ctrl-C or SIGTERM, which stops them all (SIGTERM, then SIGKILL after a grace "
        "period). With PHONEBRIDGE_DATABASE_URL / PHONEBRIDGE_REDIS_URL unset, a real embedded "
        "PostgreSQL / Redis is started first, keeping its data under PHONEBRIDGE_DATA_DIR. A "
        "crashed api, worker or scheduler is restarted with backoff (1 s doubling to 30 s); a "
        "configuration error, five quick crashes in a row or a dead embedded server stops "
        "everything with the reason."
    )
    parser.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8000, help="API port (default 8000; 0: any free)"
    )


def configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run `phonebridge up` with the upstream simulator and a signature-checking webhook "
        "receiver, register sample tasks covering every phone_status, an expiry and a failure, "
        "and show them moving to their final states. Keeps serving until Ctrl-C."
    )
    parser.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8000, help="API port (default 8000; 0: any free)"
    )
    parser.add_argument(
        "--task-ttl",
        type=positive_float,
        default=DEFAULT_DEMO_TASK_TTL_S,
        metavar="SECONDS",
        help="validity of the demo's tasks, so the never-answered one expires soon "
        f"(default {DEFAULT_DEMO_TASK_TTL_S:.0f})",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="plain line output even on a terminal (the default without one)",
    )


def configure_demo_receiver(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve a webhook receiver that verifies Standard Webhooks signatures. POST webhooks to "
        "any path; GET /received lists them with their verification result; POST /secrets "
        '{"secret": "whsec_..."} adds a secret to verify with.'
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_RECEIVER_PORT,
        help=f"port to bind (default {DEFAULT_RECEIVER_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="WHSEC",
        help="a subscription secret to verify with (repeatable; more can be POSTed later)",
    )

"""`phonebridge upstream-sim`: serve the AccuAuth simulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import time
from typing import TYPE_CHECKING

from service.cliargs import positive_float
from service.config import ConfigError, get_settings
from service.sim.defaults import (
    DEFAULT_API_ID,
    DEFAULT_API_SECRET,
    DEFAULT_PORT,
    DEFAULT_TASK_TTL_S,
    LISTENING_PREFIX,
)
from service.sim.faults import FaultMode, FaultSettings, ForcedFault, check_probabilities
from service.sim.numbers import number_digits, parse_number_scripts
from service.sim.scripts import RANDOM_SCRIPT, TaskScript, parse_script

if TYPE_CHECKING:
    from service.sim.state import SimOptions

log = logging.getLogger(__name__)

_EPILOG = (
    """\
task_ids of the form sim-<fate>[-<calls>][-<N>s|-<N>ms][-<tag>] script themselves: <fate> is a
phone_status (ring, connected, empty, busy, turned_off, outside_service_area, line_abnormal,
temp_unavailable), status_<value> (an unknown phone_status), invalid, never, or fault_<mode>;
<calls> PENDING answers and/or <N> seconds after submission come first. e.g. sim-ring-3,
sim-busy-0, sim-connected-2s-a1, sim-status_weird_value-1, sim-invalid, sim-never.

checks submitted to POST /check/phone_number/o1 take --submit-script, or a number's own scripts:
--number-script 525512345678=temp_unavailable,ring-2 makes that number's first submit answer
temp_unavailable and its second (and every later one) a task that rings after 2 PENDING
answers. A number that libphonenumber does not find valid (e.g. Bogota's old 5712345678) is
refused with INVALID_ARGUMENT, as upstream judges validity.

fault modes: """
    + ", ".join(mode.value for mode in FaultMode)
    + """.
The control API under /_sim/ (tasks, calls, stats, faults, numbers, reset) changes them at run
time.
"""
)


def _fault_probability(text: str) -> tuple[FaultMode, float]:
    mode, sep, probability = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return FaultMode(mode.strip()), float(probability)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected MODE=PROBABILITY with MODE one of {', '.join(FaultMode)}"
        ) from None


def _number_script(text: str) -> tuple[str, tuple[TaskScript, ...]]:
    number, sep, scripts_text = text.partition("=")
    digits = number_digits(number.strip())
    scripts = parse_number_scripts(part.strip() for part in scripts_text.split(","))
    if not sep or digits is None or scripts is None:
        raise argparse.ArgumentTypeError(
            "expected NUMBER=SCRIPT[,SCRIPT...], e.g. 525512345678=temp_unavailable,ring-2"
        )
    return digits, scripts


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to its subcommand parser."""
    parser.description = "Serve a local simulator of the AccuAuth phone-check endpoints."
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to bind (default {DEFAULT_PORT}; 0 picks a free one). The address is "
        f"printed on stdout as '{LISTENING_PREFIX}URL'",
    )
    parser.add_argument(
        "--api-id",
        default=None,
        help="accepted X-DF-API-ID (default: PHONEBRIDGE_UPSTREAM_API_ID when set, "
        f"else '{DEFAULT_API_ID}')",
    )
    parser.add_argument(
        "--api-secret",
        default=None,
        help="accepted X-DF-API-SECRET (default: PHONEBRIDGE_UPSTREAM_API_SECRET when set, "
        f"else '{DEFAULT_API_SECRET}'); never logged",
    )
    parser.add_argument(
        "--task-ttl",
        type=positive_float,
        default=DEFAULT_TASK_TTL_S,
        metavar="SECONDS",
        help="how long a task_id stays valid after submission (default 86400)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the random faults and random checks"
    )
    parser.add_argument(
        "--submit-script",
        default=RANDOM_SCRIPT,
        metavar="SCRIPT",
        help="script of checks submitted to POST /check/phone_number/o1, in the task_id "
        "grammar without 'sim-' (e.g. ring-2); 'random' (default) draws a plausible one each time",
    )
    parser.add_argument(
        "--number-script",
        type=_number_script,
        action="append",
        default=[],
        metavar="NUMBER=SCRIPT[,SCRIPT...]",
        help="script the successive submits of one number (repeatable; the last script repeats, "
        "see below)",
    )
    parser.add_argument(
        "--fault",
        type=_fault_probability,
        action="append",
        default=[],
        metavar="MODE=P",
        help="answer a call with MODE with probability P (repeatable; at most 1 in total)",
    )
    parser.add_argument(
        "--slow-s",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="how long the 'slow' fault waits before answering (default 5)",
    )
    parser.add_argument(
        "--rate-limit",
        type=positive_float,
        default=None,
        metavar="RPS",
        help="enforce at most RPS calls in any 1 s window; the rest get RATE_LIMIT_EXCEEDED",
    )
    parser.add_argument(
        "--retry-after",
        type=int,
        default=None,
        metavar="SECONDS",
        help="send Retry-After with RATE_LIMIT_EXCEEDED answers",
    )
    parser.add_argument(
        "--force",
        type=FaultMode,
        default=None,
        metavar="MODE",
        help="answer every call with MODE (e.g. key_expired) until changed via /_sim/faults",
    )
    parser.add_argument(
        "--force-for",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="only force MODE for the first SECONDS after start",
    )


def options_from(args: argparse.Namespace, now: float) -> SimOptions:
    """The simulator's options from the command line; ConfigError when they do not fit."""
    from service.sim.state import SimOptions

    settings = get_settings()
    api_id = args.api_id or (
        settings.upstream_api_id.get_secret_value() if settings.upstream_api_id else DEFAULT_API_ID
    )
    api_secret = args.api_secret or (
        settings.upstream_api_secret.get_secret_value()
        if settings.upstream_api_secret
        else DEFAULT_API_SECRET
    )
    submit_script: TaskScript | None = None
    if args.submit_script != RANDOM_SCRIPT:
        submit_script = parse_script(args.submit_script)
        if submit_script is None:
            raise ConfigError(
                f"upstream-sim: --submit-script: unknown script {args.submit_script!r}"
            )
    probabilities = dict(args.fault)
    try:
        check_probabilities(probabilities)
    except ValueError as error:
        raise ConfigError(f"upstream-sim: --fault: {error}") from None
    forced = None
    if args.force is not None:
        until = None if args.force_for is None else now + args.force_for
        forced = ForcedFault(args.force, until=until)
    faults = FaultSettings(
        probabilities={mode: p for mode, p in probabilities.items() if p > 0},
        slow_s=args.slow_s,
        rate_limit_rps=args.rate_limit,
        retry_after_s=args.retry_after,
        forced=forced,
    )
    return SimOptions(
        api_id=api_id,
        api_secret=api_secret,
        task_ttl_s=args.task_ttl,
        seed=args.seed,
        submit_script=submit_script,
        number_scripts=dict(args.number_script),
        faults=faults,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM (uvicorn handles both and shuts down gracefully)."""
    # The server stack loads here, not at import: every `phonebridge` command builds this
    # subcommand's parser, and should not pay for uvicorn and starlette to do so.
    from service.serving import base_url_of, listen_for_command
    from service.sim.server import uvicorn_server
    from service.sim.state import SimState

    state = SimState(options_from(args, now=time.time()))
    sock = listen_for_command("upstream-sim", args.host, args.port)
    base_url = base_url_of(sock)
    log.info(
        "sim.started",
        extra={
            "base_url": base_url,
            "task_ttl_s": state.options.task_ttl_s,
            "seed": state.options.seed,
            "faults": {mode.value: p for mode, p in state.faults.probabilities.items()},
            "rate_limit_rps": state.faults.rate_limit_rps,
        },
    )
    print(f"{LISTENING_PREFIX}{base_url}", flush=True)
    uvicorn_server(state, log_level="info").run(sockets=[sock])
    return 0

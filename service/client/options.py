"""Command-line options of `phonebridge check-file`, in a module light enough for
`phonebridge --help` (the command's own module imports httpx)."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


def api_url(text: str) -> str:
    """An http(s) base URL of the API, without a trailing slash."""
    if not text.startswith(("http://", "https://")) or len(text.split("://", 1)[1]) == 0:
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, not {text!r}")
    return text.rstrip("/")


def configure_check_file(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check every phone number of a CSV file (a header row with a phone_number column and "
        "optionally reference) as one check job: create it, show its progress, and write its "
        "results CSV (one row per accepted line, in input order). The API key is read from "
        "PHONEBRIDGE_API_KEY. Ctrl-C stops waiting but not the job, and prints the command that "
        "waits for it again (--job ID). The same file sent again finds the job it made (its "
        "Idempotency-Key is the file's digest). Exit codes: 0 results written, 1 the API failed "
        "or could not be reached, 2 wrong usage, 3 no API key or the API refused it, 4 the API "
        "refused the file or does not know the job, 5 the job was cancelled (the results of what "
        "it had submitted were written), 130 interrupted (the job keeps running)."
    )
    parser.add_argument("file", type=Path, metavar="FILE.csv", help="the CSV to check")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="RESULTS.csv",
        help="where the results CSV is written (replaced whole once the job is over)",
    )
    parser.add_argument(
        "--url",
        type=api_url,
        default=None,
        metavar="URL",
        help=f"the API's base URL (default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--job",
        default=None,
        metavar="ID",
        help="wait for this existing job instead of creating one (FILE is then not read)",
    )

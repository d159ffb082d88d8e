"""The options of `phonebridge up`, `demo` and the demo receiver (service/run/options.py): a
laptop's defaults, loopback first."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from service.client.options import api_url, configure_check_file
from service.run.options import configure_demo, configure_demo_receiver, configure_up


def parsed(configure: Callable[[argparse.ArgumentParser], None], *args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(list(args))


@pytest.mark.parametrize("configure", [configure_up, configure_demo, configure_demo_receiver])
def test_every_command_listens_on_loopback_unless_told(
    configure: Callable[[argparse.ArgumentParser], None],
) -> None:
    assert parsed(configure).host == "127.0.0.1"
    assert parsed(configure, "--host", "0.0.0.0").host == "0.0.0.0"  # noqa: S104


def test_an_unknown_option_is_refused() -> None:
    with pytest.raises(SystemExit):
        parsed(configure_up, "--no-such-option")


# --- `phonebridge check-file` (service/client/options.py) ------------------------------------


def test_check_file_takes_a_file_and_out_and_defaults_to_no_url_and_a_new_job() -> None:
    args = parsed(configure_check_file, "list.csv", "--out", "results.csv")
    assert (args.file, args.out, args.url, args.job) == (
        Path("list.csv"),
        Path("results.csv"),
        None,
        None,
    )


def test_check_file_resumes_a_job_at_a_given_url_without_its_trailing_slash() -> None:
    args = parsed(
        configure_check_file,
        "list.csv",
        "--out",
        "r.csv",
        "--url",
        "https://api.example/",
        "--job",
        "job_1",
    )
    assert (args.url, args.job) == ("https://api.example", "job_1")


@pytest.mark.parametrize(
    "argv",
    [
        ["list.csv"],  # --out is required: results must go somewhere
        ["--out", "r.csv"],  # so is the file
        ["list.csv", "--out", "r.csv", "--url", "127.0.0.1:8000"],  # a URL needs its scheme
    ],
)
def test_check_file_refuses_an_incomplete_command_line(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parsed(configure_check_file, *argv)


def test_an_api_url_names_its_scheme() -> None:
    assert api_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    with pytest.raises(argparse.ArgumentTypeError, match="http:// or https://"):
        api_url("ftp://x")
    with pytest.raises(argparse.ArgumentTypeError):
        api_url("http://")

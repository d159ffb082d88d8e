"""The options of `phonebridge up`, `demo` and the demo receiver (service/run/options.py): a
laptop's defaults, loopback first."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

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

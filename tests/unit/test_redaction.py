"""URLs in logs and error texts keep their scheme, host and port, and nothing else."""

from __future__ import annotations

import json
import logging
import sys

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.redaction import redact_urls
from service.logs import JsonFormatter
from service.webhooks.sender import describe_transport_error


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "cannot connect to https://pb.example/hooks/accuauth/tok_SECRET: refused",
            "cannot connect to https://pb.example/...: refused",
        ),
        ("POST http://10.0.0.5:8443/hook?sig=SECRET#x", "POST http://10.0.0.5:8443/..."),
        ("https://user:SECRET@host.example:9000/a", "https://host.example:9000/..."),
        ("'http://[::1]:8000/hooks/accuauth/SECRET'", "'http://[::1]:8000/...'"),
        ("https://host.example/", "https://host.example/"),
        ("https://host.example", "https://host.example"),
        ("no url at all: /hooks/accuauth/x", "no url at all: /hooks/accuauth/x"),
        ("a http://a/SECRET and b https://b/SECRET", "a http://a/... and b https://b/..."),
    ],
)
def test_a_url_keeps_its_scheme_host_and_port_only(text: str, shown: str) -> None:
    assert redact_urls(text) == shown


def test_a_url_inside_a_json_log_line_is_redacted_and_the_line_stays_json() -> None:
    line = json.dumps({"error": 'InvalidURL("https://h/hooks/accuauth/SECRET")', "n": 1})
    redacted = redact_urls(line)
    assert "SECRET" not in redacted
    assert json.loads(redacted)["error"] == 'InvalidURL("https://h/...")'


@given(
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z0-9.-]{1,20}(:[0-9]{1,5})?", fullmatch=True),
    # Punctuation at its very end would count as the sentence's; a secret ends otherwise.
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1).filter(
        lambda secret: (
            not any(c.isspace() or c in "'\"<>\\" for c in secret) and secret[-1].isalnum()
        )
    ),
)
def test_nothing_after_the_authority_survives(scheme: str, authority: str, secret: str) -> None:
    text = f"see {scheme}://{authority}/{secret} now"
    assert redact_urls(text) == f"see {scheme}://{authority}/... now"


@pytest.mark.parametrize(
    "error",
    [
        aiohttp.InvalidUrlClientError("http://pb.example/hooks/accuauth/tok_SECRET"),
        aiohttp.ClientConnectionError("lost http://pb.example/hooks/accuauth/tok_SECRET"),
        OSError("cannot reach https://user:SECRET@pb.example:8443/x?token=SECRET"),
    ],
)
def test_a_delivery_error_text_never_carries_a_urls_path_query_or_credentials(
    error: BaseException,
) -> None:
    text = describe_transport_error(error, 15.0)
    assert "SECRET" not in text
    assert "pb.example" in text


def test_a_log_line_shows_no_url_path_in_any_field_nor_in_its_traceback() -> None:
    try:
        raise ValueError("POST https://pb.example/hooks/accuauth/tok_SECRET failed")
    except ValueError:
        record = logging.getLogger("test").makeRecord(
            "test",
            logging.WARNING,
            __file__,
            1,
            "delivery.failed url=%s",
            ("https://r.example/in?sig=SECRET",),
            sys.exc_info(),
            extra={"url": "https://r.example:444/SECRET", "nested": {"u": "http://x/SECRET"}},
        )
    line = JsonFormatter().format(record)
    assert "SECRET" not in line
    entry = json.loads(line)
    assert entry["event"] == "delivery.failed url=https://r.example/..."
    assert entry["url"] == "https://r.example:444/..."
    assert "https://pb.example/..." in entry["exc"]

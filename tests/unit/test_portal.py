"""The portal's pure parts: sealed sessions, CSRF tokens and the bar chart layout."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.portal import (
    SessionClaims,
    csrf_matches,
    csrf_token,
    open_session,
    seal_session,
    sign_in_nonce,
    sign_in_nonce_is_fresh,
    stacked_bars,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CLAIMS = SessionClaims(7, b"\x01" * 32, "ab" * 16, 2_000_000_000)


@given(
    client_id=st.integers(min_value=1, max_value=2**62),
    digest=st.binary(min_size=32, max_size=32),
    expires_at=st.integers(min_value=1_000_001, max_value=2**40),
)
def test_a_sealed_session_opens_to_its_claims_until_it_expires(client_id, digest, expires_at):
    claims = SessionClaims(client_id, digest, "cd" * 16, expires_at)
    token = seal_session(KEY, claims, os.urandom(12))
    assert open_session(KEY, token, expires_at - 1) == claims
    assert open_session(KEY, token, expires_at) is None


def test_a_session_does_not_open_under_another_key():
    assert open_session(OTHER_KEY, seal_session(KEY, CLAIMS, os.urandom(12)), 0) is None


@given(position=st.integers(min_value=0, max_value=10_000), flip=st.integers(1, 255))
def test_any_changed_byte_breaks_the_seal(position, flip):
    sealed = bytearray(base64.urlsafe_b64decode(seal_session(KEY, CLAIMS, bytes(12)) + "=="))
    sealed[position % len(sealed)] ^= flip
    forged = base64.urlsafe_b64encode(bytes(sealed)).rstrip(b"=").decode()
    assert open_session(KEY, forged, 0) is None


@given(st.text(max_size=2000))
def test_junk_never_opens_and_never_raises(junk):
    assert open_session(KEY, junk, 0) is None


def test_csrf_tokens_belong_to_one_session():
    token = csrf_token(KEY, "session-a")
    assert csrf_matches(KEY, "session-a", token)
    assert not csrf_matches(KEY, "session-b", token)
    assert not csrf_matches(OTHER_KEY, "session-a", token)
    assert not csrf_matches(KEY, "session-a", None)
    assert not csrf_matches(KEY, "session-a", "")


@given(
    st.lists(
        st.dictionaries(st.sampled_from(["a", "b"]), st.integers(min_value=0, max_value=10**6)),
        min_size=1,
        max_size=48,
    )
)
def test_stacked_bars_fit_the_chart_and_the_tallest_fills_it(counts):
    buckets = [(str(i), c) for i, c in enumerate(counts)]
    bars, top = stacked_bars(buckets, ["a", "b"], width=720, height=160)
    assert top == max(sum(c.values()) for c in counts)
    for bar in bars:
        assert bar.value > 0
        assert 0 <= bar.x <= 720
        assert bar.x + bar.width <= 720 + 1e-6
        assert bar.y >= -1e-6
        assert bar.y + bar.height <= 160 + 1e-6
    if top > 0:
        assert min(bar.y for bar in bars) < 1e-6


def test_no_counts_draw_no_bars():
    assert stacked_bars([("00", {}), ("01", {"a": 0})], ["a"], width=10, height=10) == ([], 0)


@pytest.mark.parametrize(
    ("nonce", "fresh"),
    [
        (sign_in_nonce(1_000_000, "ab12"), True),
        (sign_in_nonce(1_000_000 - 600, "ab12"), True),
        (sign_in_nonce(1_000_000 - 601, "ab12"), False),
        (sign_in_nonce(1_000_001, "ab12"), True),  # a second of clock difference
        (sign_in_nonce(1_000_002, "ab12"), False),
        ("1000000", False),
        ("1000000.", False),
        (".ab12", False),
        ("-5.ab12", False),
        ("\uff11\uff10.ab12", False),  # fullwidth digits: digits, but not ASCII ones
        ("", False),
    ],
)
def test_a_sign_in_nonce_is_fresh_only_within_its_lifetime(nonce: str, fresh: bool) -> None:
    assert sign_in_nonce_is_fresh(nonce, 1_000_000.5, 600) is fresh

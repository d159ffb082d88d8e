"""The SSRF guard's rules: which URLs, host names and addresses a webhook may go to."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.addresses import (
    Refusal,
    WebhookTarget,
    address_refusal,
    addresses_refusal,
    is_metadata_address,
    parse_webhook_url,
)

# Every non-public class, with IPv4 and IPv6 examples, and a word its refusal must contain.
NON_PUBLIC = [
    ("0.0.0.0", "unspecified"),  # noqa: S104
    ("0.1.2.3", "unspecified"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.254", "CGNAT"),
    ("169.254.1.1", "link-local"),
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("100.100.100.200", "metadata"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.10", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.99", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("192.88.99.1", "6to4 relay"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fc00::1", "unique-local"),
    ("fd12:3456:789a::1", "unique-local"),
    ("fd00:ec2::254", "metadata"),
    ("fe80::1", "link-local"),
    ("febf:ffff::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff05::2", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:2::1", "benchmarking"),
    ("100::1", "discard-only"),
    ("64:ff9b:1::a00:1", "local-use NAT64"),
    ("::ffff:127.0.0.1", "IPv4-mapped"),
    ("::ffff:10.0.0.1", "IPv4-mapped"),
    ("::ffff:8.8.8.8", "IPv4-mapped"),  # mapped is refused whatever it carries
    ("::ffff:169.254.169.254", "metadata"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("::10.0.0.1", "IPv4-compatible"),
    ("64:ff9b::7f00:1", "NAT64 form of a loopback"),
    ("64:ff9b::a00:1", "NAT64 form of a private"),
    ("64:ff9b::a9fe:a9fe", "metadata"),
    ("2002:7f00:1::1", "6to4 form of a loopback"),
    ("2002:c0a8:101::1", "6to4 form of a private"),
    ("2002:a9fe:a9fe::1", "metadata"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001::1", "Teredo"),
    ("2001:10::1", "reserved"),
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "192.169.0.1",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "64:ff9b::808:808",  # NAT64 of a public address
    "2002:808:808::1",  # 6to4 of a public address
]


@pytest.mark.parametrize(("address", "word"), NON_PUBLIC)
def test_non_public_addresses_are_refused(address: str, word: str) -> None:
    refusal = address_refusal(ip_address(address), allow_private=False)
    assert refusal is not None
    assert word in refusal.reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ip_address(address), allow_private=False) is None


@pytest.mark.parametrize(("address", "word"), NON_PUBLIC)
def test_allow_private_lets_everything_but_cloud_metadata_through(address: str, word: str) -> None:
    refusal = address_refusal(ip_address(address), allow_private=True)
    if word == "metadata":
        assert refusal is not None
        assert "metadata" in refusal.reason
    else:
        assert refusal is None


def test_scoped_ipv6_is_refused() -> None:
    assert address_refusal(IPv6Address("fe80::1%eth0"), allow_private=False) is not None


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_ipv4_address_mapped_into_ipv6_is_refused(value: int) -> None:
    mapped = IPv6Address(0xFFFF00000000 | value)
    assert address_refusal(mapped, allow_private=False) is not None


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_nat64_and_6to4_follow_the_ipv4_they_carry(value: int) -> None:
    inner = IPv4Address(value)
    inner_refused = address_refusal(inner, allow_private=False) is not None
    nat64 = IPv6Address((0x0064FF9B << 96) | value)
    six_to_four = IPv6Address((0x2002 << 112) | (value << 80) | 1)
    assert (address_refusal(nat64, allow_private=False) is not None) is inner_refused
    assert (address_refusal(six_to_four, allow_private=False) is not None) is inner_refused


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_any_ipv4_the_standard_library_calls_non_global_is_refused(value: int) -> None:
    address = IPv4Address(value)
    if not address.is_global:
        assert address_refusal(address, allow_private=False) is not None


def test_metadata_addresses_in_every_form() -> None:
    for form in ("169.254.169.254", "::ffff:169.254.169.254", "fd00:ec2::254", "::a9fe:a9fe"):
        assert is_metadata_address(ip_address(form)), form
    assert not is_metadata_address(ip_address("169.254.169.253"))


# --- host resolution results ---------------------------------------------------------------


def test_a_host_resolving_to_one_private_address_among_public_ones_is_refused() -> None:
    addresses = [ip_address("93.184.215.14"), ip_address("10.1.2.3")]
    refusal = addresses_refusal(addresses, "mixed.example", allow_private=False)
    assert refusal == Refusal("mixed.example resolves to 10.1.2.3, which is a private address")


def test_a_host_resolving_only_to_public_addresses_passes() -> None:
    addresses = [ip_address("93.184.215.14"), ip_address("2606:4700:4700::1111")]
    assert addresses_refusal(addresses, "ok.example", allow_private=False) is None


def test_a_host_resolving_to_nothing_is_refused() -> None:
    assert addresses_refusal([], "void.example", allow_private=True) is not None


def test_a_host_resolving_to_metadata_is_refused_even_when_private_is_allowed() -> None:
    refusal = addresses_refusal([ip_address("169.254.169.254")], "sneaky.example", True)
    assert refusal is not None
    assert "metadata" in refusal.reason


# --- URL rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("https://hooks.example.com/phonebridge", "hooks.example.com", 443),
        ("http://hooks.example.com/x?y=1", "hooks.example.com", 80),
        ("HTTPS://Hooks.Example.COM:8443/", "hooks.example.com", 8443),
        ("https://hooks.example.com./x", "hooks.example.com", 443),
        ("https://bücher.example/hook", "xn--bcher-kva.example", 443),
        ("https://my_service.example.com/", "my_service.example.com", 443),
        ("https://8.8.8.8/hook", "8.8.8.8", 443),
        ("https://[2001:4860:4860::8888]:8443/hook", "2001:4860:4860::8888", 8443),
    ],
)
def test_public_urls_are_accepted(url: str, host: str, port: int) -> None:
    target = parse_webhook_url(url, allow_private=False)
    assert isinstance(target, WebhookTarget)
    assert (target.host, target.port) == (host, port)


@pytest.mark.parametrize(
    ("url", "word"),
    [
        ("ftp://example.com/", "http"),
        ("file:///etc/passwd", "http"),
        ("gopher://example.com/", "http"),
        ("javascript:alert(1)", "http"),
        ("example.com/hook", "http"),
        ("https:///hook", "no host"),
        ("https://user:pass@example.com/", "credentials"),
        ("https://token@example.com/", "credentials"),
        ("https://example.com:0/", "port"),
        ("https://example.com:99999/", "malformed"),
        ("https://example.com:abc/", "malformed"),
        ("https://[::1/", "malformed"),
        ("https://exa mple.com/", "whitespace"),
        ("https://example.com/\nX-Injected: 1", "control"),
        ("https://" + "a" * 2100 + ".com/", "longer"),
        ("http://127.0.0.1/", "loopback"),
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://10.0.0.5/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://[fc00::1]/", "unique-local"),
        ("http://localhost/", "loopback"),
        ("http://LOCALHOST./", "loopback"),
        ("http://api.localhost/", "loopback"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("http://metadata/", "metadata"),
        ("http://127.1/", "standard form"),
        ("http://2130706433/", "standard form"),
        ("http://0x7f000001/", "standard form"),
        ("http://0x7f.0.0.1/", "standard form"),
        ("http://017700000001/", "standard form"),
        ("http://exa$mple.com/", "not a valid host"),
        ("http://-bad-.example.com/", "not a valid host"),
    ],
)
def test_refused_urls_say_why(url: str, word: str) -> None:
    refusal = parse_webhook_url(url, allow_private=False)
    assert isinstance(refusal, Refusal), refusal
    assert word in refusal.reason


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/hook", "http://[::1]:9/", "http://localhost:8000/", "http://10.0.0.5/"],
)
def test_private_urls_are_accepted_when_allowed(url: str) -> None:
    assert isinstance(parse_webhook_url(url, allow_private=True), WebhookTarget)


def test_metadata_urls_are_refused_even_when_private_is_allowed() -> None:
    for url in ("http://169.254.169.254/", "http://metadata.google.internal/"):
        assert isinstance(parse_webhook_url(url, allow_private=True), Refusal)


def test_a_literal_target_remembers_its_address() -> None:
    target = parse_webhook_url("https://8.8.4.4:444/x", allow_private=False)
    assert isinstance(target, WebhookTarget)
    assert target.literal_address == ip_address("8.8.4.4")
    named = parse_webhook_url("https://hooks.example.com/x", allow_private=False)
    assert isinstance(named, WebhookTarget)
    assert named.literal_address is None

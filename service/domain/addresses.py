"""Which webhook URLs and addresses phonebridge may send to (the SSRF guard's rules).

A subscriber chooses the URL, so without these rules anyone with an API key could make the
service POST into its own network: loopback, private ranges, link-local, the cloud metadata
endpoint. A URL must be http(s); its host, and every address it resolves to, must be public
unless private addresses are explicitly allowed. Cloud metadata endpoints are refused even then:
no legitimate webhook lives there, and reaching one can hand out the host's credentials.

Addresses that carry an IPv4 address inside an IPv6 one are judged by the IPv4 they carry (6to4,
NAT64) or refused outright (IPv4-mapped, IPv4-compatible, Teredo), because the operating system
or a relay may route them to that IPv4 address.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from urllib.parse import urlsplit

IPAddress = IPv4Address | IPv6Address

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        ip_address("169.254.170.2"),  # AWS ECS task metadata
        ip_address("100.100.100.200"),  # Alibaba Cloud
        ip_address("fd00:ec2::254"),  # AWS over IPv6
    }
)
METADATA_HOSTNAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)

_IPV4_RULES: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(network), label)
    for network, label in (
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("127.0.0.0/8", "a loopback address"),
        ("10.0.0.0/8", "a private address"),
        ("172.16.0.0/12", "a private address"),
        ("192.168.0.0/16", "a private address"),
        ("100.64.0.0/10", "a shared (CGNAT) address"),
        ("169.254.0.0/16", "a link-local address"),
        ("192.0.0.0/24", "a reserved (IETF protocol assignment) address"),
        ("192.0.2.0/24", "a documentation address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("192.88.99.0/24", "a reserved (6to4 relay) address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
    )
)

_IPV6_RULES: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(network), label)
    for network, label in (
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001:2::/48", "a benchmarking address"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("fc00::/7", "a unique-local address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)
_IPV4_COMPATIBLE = IPv6Network("::/96")
_NAT64 = IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = IPv6Network("2002::/16")

# A hostname's labels: letters, digits, hyphens (and underscores, which real DNS names carry).
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
# A last label that inet_aton would read as a number ("127.1", "0x7f.1", "2130706433"): such a
# "name" is an IPv4 address in disguise.
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")


@dataclass(frozen=True)
class WebhookTarget:
    """A webhook URL that passed the syntactic rules: where a send would connect."""

    url: str
    scheme: str
    host: str
    port: int
    literal_address: IPAddress | None


@dataclass(frozen=True)
class Refusal:
    """Why a URL or an address may not be used; safe to show to the subscriber."""

    reason: str


def _embedded_ipv4(address: IPv6Address) -> IPv4Address:
    return IPv4Address(int(address) & 0xFFFFFFFF)


def _ipv4_refusal(address: IPv4Address) -> str | None:
    for network, label in _IPV4_RULES:
        if address in network:
            return label
    if not address.is_global:
        return "a reserved address"
    return None


def _ipv6_refusal(address: IPv6Address) -> str | None:
    if address.scope_id:
        return "a scoped (link-local) address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    mapped = address.ipv4_mapped
    if mapped is not None:
        return f"an IPv4-mapped address (of {mapped})"
    if address in _IPV4_COMPATIBLE:
        return f"an IPv4-compatible address (of {_embedded_ipv4(address)})"
    teredo = address.teredo
    if teredo is not None:
        return f"a Teredo address (server {teredo[0]}, client {teredo[1]})"
    for network, label in _IPV6_RULES:
        if address in network:
            return label
    for network, form, embedded in (
        (_NAT64, "NAT64", _embedded_ipv4(address)),
        (_SIX_TO_FOUR, "6to4", address.sixtofour),
    ):
        if address in network and embedded is not None:
            inner = _ipv4_refusal(embedded)
            return None if inner is None else f"a {form} form of {inner} ({embedded})"
    if not address.is_global:
        return "a reserved address"
    return None


def _embedded_forms(address: IPv6Address) -> list[IPv4Address]:
    forms = [address.ipv4_mapped, address.sixtofour]
    if address in _IPV4_COMPATIBLE or address in _NAT64:
        forms.append(_embedded_ipv4(address))
    return [form for form in forms if form is not None]


def is_metadata_address(address: IPAddress) -> bool:
    """A cloud provider's instance-metadata endpoint, in any form that reaches it."""
    if address in METADATA_ADDRESSES:
        return True
    return isinstance(address, IPv6Address) and any(
        form in METADATA_ADDRESSES for form in _embedded_forms(address)
    )


def _address_label(address: IPAddress, allow_private: bool) -> str | None:
    if is_metadata_address(address):
        return "a cloud metadata address"
    if allow_private:
        return None
    if isinstance(address, IPv4Address):
        return _ipv4_refusal(address)
    return _ipv6_refusal(address)


def address_refusal(address: IPAddress, allow_private: bool) -> Refusal | None:
    """Why a send must not connect to `address`, or None when it may."""
    label = _address_label(address, allow_private)
    return None if label is None else Refusal(f"{address} is {label}")


def addresses_refusal(
    addresses: Sequence[IPAddress], host: str, allow_private: bool
) -> Refusal | None:
    """Why `host` may not be used given the addresses it resolves to, or None when it may.

    Every address must pass: the connection may go to any of them.
    """
    if not addresses:
        return Refusal(f"{host} does not resolve to any address")
    for address in addresses:
        label = _address_label(address, allow_private)
        if label is not None:
            return Refusal(f"{host} resolves to {address}, which is {label}")
    return None


def _hostname_refusal(host: str, allow_private: bool) -> Refusal | None:
    if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        return Refusal(f"{host!r} is not a valid host name")
    if _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        return Refusal(f"{host!r} is not a valid host name (write IP addresses in standard form)")
    if host in METADATA_HOSTNAMES:
        return Refusal(f"{host} is a cloud metadata host")
    if not allow_private and (host == "localhost" or host.endswith(".localhost")):
        return Refusal(f"{host} is a loopback host")
    return None


def _ascii_host(raw_host: str) -> str | None:
    host = raw_host.lower().rstrip(".")
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def parse_webhook_url(url: str, allow_private: bool) -> WebhookTarget | Refusal:
    """Check a subscriber's URL by its text alone (scheme, host, port, literal addresses).

    Host names still have to be resolved and their addresses checked with `addresses_refusal`,
    at creation and again at every send.
    """
    if len(url) > MAX_URL_LENGTH:
        return Refusal(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return Refusal("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return Refusal("the URL is malformed (check the host and port)")
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        return Refusal("the URL must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        return Refusal("credentials in the URL are not supported")
    if not parts.hostname:
        return Refusal("the URL has no host")
    if port == 0:
        return Refusal("the URL's port must be between 1 and 65535")
    target_port = port if port is not None else DEFAULT_PORTS[scheme]
    try:
        literal: IPAddress | None = ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None:
        refusal = address_refusal(literal, allow_private)
        if refusal is not None:
            return refusal
        return WebhookTarget(url, scheme, str(literal), target_port, literal)
    host = _ascii_host(parts.hostname)
    if host is None:
        return Refusal(f"{parts.hostname!r} is not a valid host name")
    refusal = _hostname_refusal(host, allow_private)
    if refusal is not None:
        return refusal
    return WebhookTarget(url, scheme, host, target_port, None)

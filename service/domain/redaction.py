"""URLs as logs and error texts may show them: scheme, host and port. A URL's path and query can
carry a secret (the callback route's token, a receiver's own token in its webhook URL, a signed
query), and its user information is one; none of them is needed to tell where a call went."""

from __future__ import annotations

import re

# A scheme, then an authority up to the first '/', '?' or '#', then the rest of the URL. A URL
# in text ends at white space, a quote, angle brackets or a backslash (a JSON escape in a log);
# punctuation just before that end (`: refused`, `(see URL).`) is the sentence's, not the URL's.
_URL = re.compile(
    r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^/?#\s'\"<>\\]*)([^\s'\"<>\\]*?)"
    r"(?=[.,;:!)\]]*(?:[\s'\"<>\\]|$))"
)


def redact_url(match: re.Match[str]) -> str:
    scheme, authority, rest = match.groups()
    host_and_port = authority.rpartition("@")[2]  # user information is dropped
    return f"{scheme}{host_and_port}{'/...' if rest not in ('', '/') else rest}"


def redact_urls(text: str) -> str:
    """`text` with each URL cut to its scheme, host and port (`/...` where there was more)."""
    if "://" not in text:
        return text
    return _URL.sub(redact_url, text)

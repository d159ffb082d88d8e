"""Public identifiers: a type prefix and 128 random bits, e.g. `evt_2f1c...`."""

from __future__ import annotations

import secrets

EVENT_PREFIX = "evt"
SUBSCRIPTION_PREFIX = "sub"
DELIVERY_PREFIX = "dlv"


def new_public_id(prefix: str) -> str:
    """A fresh, unguessable identifier of the given type."""
    return f"{prefix}_{secrets.token_hex(16)}"

"""Public identifiers: a type prefix, an underscore and 128 random bits in hex, e.g. `evt_2f1c...`.

Events and subscriptions get theirs from `new_public_id`; deliveries are minted in SQL
(`public_id_sql`, service/store/outbox.py) because only the statement knows how many it makes.
"""

from __future__ import annotations

import re
import secrets

EVENT_PREFIX = "evt"
SUBSCRIPTION_PREFIX = "sub"
DELIVERY_PREFIX = "dlv"
JOB_PREFIX = "job"

# The width of the public_id columns; a prefix, "_" and 32 hex digits fit with room to spare.
PUBLIC_ID_MAX_LENGTH = 40

# What may name a row. Deliberately looser than what is minted (any prefix, any length that fits
# the column): text outside it cannot name anything, so the API answers 404 without a query, and
# it keeps characters Postgres refuses (NUL) away from it.
PUBLIC_ID_SHAPE = re.compile(rf"[A-Za-z0-9_]{{1,{PUBLIC_ID_MAX_LENGTH}}}")


def new_public_id(prefix: str) -> str:
    """A fresh, unguessable identifier of the given type."""
    return f"{prefix}_{secrets.token_hex(16)}"


def public_id_sql(prefix: str) -> str:
    """An SQL expression minting one identifier of the shape `new_public_id(prefix)` makes: the
    prefix and a random UUID's 32 hex digits."""
    return f"'{prefix}_' || replace(gen_random_uuid()::text, '-', '')"


def is_public_id_shaped(text: str) -> bool:
    """Whether `text` could name a row by its public id."""
    return PUBLIC_ID_SHAPE.fullmatch(text) is not None

"""Task scripts: what a simulated task answers, decided by its task_id or by registration.

A task_id that starts with ``sim-`` carries its own script, so a test can hand it to phonebridge
without registering anything, and the script survives a simulator restart:

    sim-<fate>[-<calls>][-<delay>s|-<delay>ms][-<tag>...]

- ``<fate>`` is what the task ends with: one of the eight phone_status values (``ring``,
  ``busy``, ``turned_off``...), ``status_<value>`` for an OK answer with an unknown phone_status
  ``<value>``, ``invalid`` for INVALID_ARGUMENT ("argument 'task_id': not found"), ``never`` for
  a task that stays PENDING until its validity ends, or ``fault_<mode>`` for a task that answers
  with one fault mode (see `faults.FaultMode`) on every call.
- ``<calls>`` is how many PENDING answers come before the fate (default 0: the first call gets
  it); ``<delay>`` is how long after submission the fate becomes due. With both, both must pass.
- Anything after that is a free tag that makes the id unique (``sim-ring-3-7f2c``).

Examples: ``sim-busy-0``, ``sim-ring-3``, ``sim-connected-2s``, ``sim-empty-1-500ms-a1``,
``sim-status_weird_value-1``, ``sim-invalid``, ``sim-never``, ``sim-fault_html``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from enum import StrEnum

from service.domain.answers import PhoneStatus
from service.sim.faults import FaultMode

TASK_ID_PREFIX = "sim-"
RANDOM_SCRIPT = "random"  # the submit script that draws a plausible script per check

# The domain's list, in its order (the weights below follow it).
PHONE_STATUSES: tuple[str, ...] = tuple(status.value for status in PhoneStatus)

# How often each phone_status comes up for checks submitted with the "random" script; roughly
# what a mixed list of numbers looks like, so demos show every status.
_RANDOM_STATUS_WEIGHTS: tuple[int, ...] = (30, 10, 15, 10, 15, 5, 5, 10)

_CALLS = re.compile(r"\d{1,9}")
_DELAY = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)(s|ms)")
_UNKNOWN_STATUS_VALUE = re.compile(r"[a-z0-9_]{1,64}")
UNKNOWN_STATUS_PREFIX = "status_"
FAULT_PREFIX = "fault_"


class FateKind(StrEnum):
    STATUS = "status"  # OK with a phone_status, known or not
    INVALID = "invalid"  # INVALID_ARGUMENT, argument 'task_id': not found
    NEVER = "never"  # PENDING until the task expires
    FAULT = "fault"  # one fault mode on every call


@dataclass(frozen=True, slots=True)
class Fate:
    kind: FateKind
    phone_status: str | None = None
    fault: FaultMode | None = None

    @property
    def token(self) -> str:
        """The fate as written in a task_id."""
        if self.kind is FateKind.STATUS:
            assert self.phone_status is not None
            if self.phone_status in PHONE_STATUSES:
                return self.phone_status
            return UNKNOWN_STATUS_PREFIX + self.phone_status
        if self.kind is FateKind.FAULT:
            assert self.fault is not None
            return FAULT_PREFIX + self.fault.value
        return self.kind.value


@dataclass(frozen=True, slots=True)
class TaskScript:
    fate: Fate
    pending_calls: int = 0
    pending_s: float = 0.0

    @property
    def text(self) -> str:
        """The script in the task_id grammar, without the ``sim-`` prefix."""
        parts = [self.fate.token, str(self.pending_calls)]
        if self.pending_s:
            parts.append(f"{self.pending_s:.6f}".rstrip("0").rstrip(".") + "s")
        return "-".join(parts)


def parse_fate(token: str) -> Fate | None:
    """The fate a task_id token names, or None when it names none."""
    if token in PHONE_STATUSES:
        return Fate(FateKind.STATUS, phone_status=token)
    if token == FateKind.INVALID.value:
        return Fate(FateKind.INVALID)
    if token == FateKind.NEVER.value:
        return Fate(FateKind.NEVER)
    if token.startswith(UNKNOWN_STATUS_PREFIX):
        value = token.removeprefix(UNKNOWN_STATUS_PREFIX)
        if _UNKNOWN_STATUS_VALUE.fullmatch(value):
            return Fate(FateKind.STATUS, phone_status=value)
        return None
    if token.startswith(FAULT_PREFIX):
        try:
            return Fate(FateKind.FAULT, fault=FaultMode(token.removeprefix(FAULT_PREFIX)))
        except ValueError:
            return None
    return None


def parse_script(text: str) -> TaskScript | None:
    """Parse ``<fate>[-<calls>][-<delay>s|ms][-<tag>...]``; None when the fate is unknown."""
    tokens = text.split("-")
    fate = parse_fate(tokens[0])
    if fate is None:
        return None
    rest = tokens[1:]
    pending_calls = 0
    pending_s = 0.0
    if rest and _CALLS.fullmatch(rest[0]):
        pending_calls = int(rest.pop(0))
    if rest and (delay := _DELAY.fullmatch(rest[0])):
        rest.pop(0)
        amount = float(delay.group(1))
        pending_s = amount / 1000.0 if delay.group(2) == "ms" else amount
    # Whatever remains is the tag: it only makes the task_id unique.
    return TaskScript(fate=fate, pending_calls=pending_calls, pending_s=pending_s)


def script_for_task_id(task_id: str) -> TaskScript | None:
    """The script a ``sim-...`` task_id encodes, or None for any other task_id."""
    if not task_id.startswith(TASK_ID_PREFIX):
        return None
    return parse_script(task_id.removeprefix(TASK_ID_PREFIX))


def random_script(rng: random.Random) -> TaskScript:
    """A plausible check: a weighted phone_status after 0-3 PENDING answers."""
    (status,) = rng.choices(PHONE_STATUSES, weights=_RANDOM_STATUS_WEIGHTS)
    return TaskScript(Fate(FateKind.STATUS, phone_status=status), pending_calls=rng.randint(0, 3))


def mask_phone_number(phone_number: str) -> str:
    """Keep the first four characters and mask the rest, as upstream does (``0062********``)."""
    return phone_number[:4] + "*" * max(len(phone_number) - 4, 0)

"""The simulator's phone numbers: which submits it refuses, the plausible numbers it makes up, and
numbers scripted to answer differently on successive submits.

- A submitted `phone_number` must be digits after an optional '+' and a *valid* number for
  libphonenumber (upstream judges validity; phonebridge asks only that a number be possible), or
  the submit answers INVALID_ARGUMENT. Colombia's old 8-digit Bogotá numbers (`5712345678`) are
  possible and no longer valid: the way to meet that refusal through phonebridge.
- A number may be given scripts, in the task_id grammar without ``sim-`` (`scripts.py`): its
  n-th submit takes the n-th script, and every submit after the last takes the last again. With
  `temp_unavailable,ring-2` the first submit answers `temp_unavailable` at once and the second
  becomes a task that rings after two PENDING answers. Scripts come from
  `--number-script NUMBER=SCRIPT[,SCRIPT...]` (kept across `/_sim/reset`) or
  `PUT /_sim/numbers/{number}` `{"scripts": [...]}` (forgotten at reset); a number without
  scripts follows the submit script (`--submit-script`, `random` by default).
- Each number's accepted submits are counted (`GET /_sim/numbers/{number}`), so a test can tell
  how many times a number was checked.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from service.sim.scripts import TaskScript, parse_script

_NUMBER = re.compile(r"\+?([0-9]{6,20})")
# Mexico's three largest cities, Colombia's mobile ranges and Bogotá's landlines: every number
# made from them (12 digits in all) is a valid one.
PLAUSIBLE_PREFIXES: tuple[str, ...] = ("5255", "5233", "5281", "57300", "57310", "57320", "576012")
PLAUSIBLE_LENGTH = 12
INVALID_NUMBER_REASON = "argument 'phone_number': invalid"


def number_digits(text: str) -> str | None:
    """A number as upstream is sent it: its digits, without the optional '+'; None when `text`
    is not 6-20 digits after an optional '+'."""
    match = _NUMBER.fullmatch(text)
    return None if match is None else match.group(1)


def is_valid_number(digits: str) -> bool:
    """Whether libphonenumber finds `digits` (E.164 without '+') a valid number."""
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number)


def plausible_phone_number(seed: str) -> str:
    """A valid Mexican or Colombian number, the same for the same `seed`; nobody is called."""
    value = int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest(), "big")
    prefix = PLAUSIBLE_PREFIXES[value % len(PLAUSIBLE_PREFIXES)]
    width = PLAUSIBLE_LENGTH - len(prefix)
    return prefix + f"{(value // len(PLAUSIBLE_PREFIXES)) % 10**width:0{width}d}"


def parse_number_scripts(texts: Iterable[str]) -> tuple[TaskScript, ...] | None:
    """Scripts in the task_id grammar (`["temp_unavailable", "ring-2"]`); None when any is not
    one, or when there are none."""
    scripts = tuple(parse_script(text) for text in texts)
    if not scripts or any(script is None for script in scripts):
        return None
    return tuple(script for script in scripts if script is not None)


@dataclass(slots=True)
class NumberScripts:
    """Scripted numbers and every number's count of accepted submits."""

    scripts: dict[str, tuple[TaskScript, ...]] = field(default_factory=dict)
    submits: Counter[str] = field(default_factory=Counter)

    @classmethod
    def starting_with(cls, scripts: Mapping[str, tuple[TaskScript, ...]]) -> NumberScripts:
        return cls(scripts=dict(scripts))

    def script(self, digits: str, scripts: tuple[TaskScript, ...]) -> None:
        """Script `digits` from its next submit on (an empty tuple unscripts it); its count of
        submits starts again, so the first script is the next submit's."""
        if scripts:
            self.scripts[digits] = scripts
        else:
            self.scripts.pop(digits, None)
        self.submits.pop(digits, None)

    def take(self, digits: str) -> TaskScript | None:
        """Count one accepted submit of `digits`; its script for this submit, if it has any."""
        self.submits[digits] += 1
        scripts = self.scripts.get(digits)
        if not scripts:
            return None
        return scripts[min(self.submits[digits], len(scripts)) - 1]

    def view(self, digits: str) -> dict[str, Any]:
        return {
            "phone_number": digits,
            "scripts": [script.text for script in self.scripts.get(digits, ())],
            "submits": self.submits.get(digits, 0),
        }

    def views(self) -> list[dict[str, Any]]:
        """Every scripted number, in the order they were scripted."""
        return [self.view(digits) for digits in self.scripts]

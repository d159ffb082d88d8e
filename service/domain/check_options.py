"""The options a single check (`POST /v1/checks`) and a check job share, each checked by one
function that both call: `max_age_s` (answer from this client's own recent final answer, with no
upstream call) and `recheck` (submit the number again after a final answer with one of some
verdicts).

Pure: the caller passes the parsed JSON value (or, for a CSV job, the query parameter's text)
and a list to add broken rules to, as `service.domain.intake.check_metadata` does; every broken
rule is reported, named by its field (`recheck.after_s`, `query.max_age_s`).

The rules:
- `max_age_s`: a whole number of seconds from 0 to 30 days (2,592,000; the contract's range);
  absent or null is 0 (never answer from an earlier check).
- `recheck`: absent or null is no re-check; otherwise an object with `verdicts` (required: a
  non-empty array of verdict names; a name given twice counts once), `after_s` (default 600, from
  60 s to 1 day) and `max` (default 1, from 1 to 3). No other field. The bounds are ours (the
  contract is silent): a re-check sooner than a minute costs a paid call for an answer that has
  had no time to change; the task stays `pending` until its last answer, so `max` x `after_s`
  holds it open for at most 3 days; and each re-check is one more upstream submit against the
  client's budget.
- Numbers are JSON integers: `600.0`, `"600"` and booleans are refused, as for every other
  number of the API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from service.domain.intake import FieldError, json_type, shown_field_name
from service.domain.verdicts import Verdict

# The contract's verdict names (the table under "Phone numbers and what an answer means"), in its
# order: what `recheck.verdicts` may name and what a job's `counts.by_verdict` counts.
VERDICTS = tuple(verdict.value for verdict in Verdict)

MAX_AGE_MAX_S = 30 * 24 * 3600
RECHECK_FIELDS = ("verdicts", "after_s", "max")
RECHECK_AFTER_DEFAULT_S = 600
RECHECK_AFTER_MIN_S = 60
RECHECK_AFTER_MAX_S = 24 * 3600
RECHECK_MAX_DEFAULT = 1
RECHECK_MAX_LIMIT = 3

_WHOLE_NUMBER = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True, slots=True)
class Recheck:
    """A valid `recheck`: `verdicts` distinct, in the order of VERDICTS."""

    verdicts: tuple[str, ...]
    after_s: int
    max: int

    def wants_another(self, verdict: str | None, rechecks_done: int) -> bool:
        """Whether a final answer with this verdict, after `rechecks_done` re-checks, is submitted
        again (after `after_s`) rather than kept as the last answer."""
        return verdict in self.verdicts and rechecks_done < self.max

    def as_json(self) -> dict[str, Any]:
        return {"verdicts": list(self.verdicts), "after_s": self.after_s, "max": self.max}


def check_max_age_s(
    value: object, errors: list[FieldError], *, field: str = "max_age_s"
) -> int | None:
    """`max_age_s` as a JSON value: the seconds (0 when absent), or None with the broken rule
    added to `errors`."""
    if value is None:
        return 0
    return _whole_number_within(value, field, 0, MAX_AGE_MAX_S, errors)


def check_max_age_s_text(
    text: str, errors: list[FieldError], *, field: str = "query.max_age_s"
) -> int | None:
    """`max_age_s` as a query parameter's text (a CSV job): decimal digits, the same range."""
    if _WHOLE_NUMBER.fullmatch(text) is None:
        errors.append(FieldError(field, _range_rule(0, MAX_AGE_MAX_S)))
        return None
    return _whole_number_within(int(text), field, 0, MAX_AGE_MAX_S, errors)


def check_recheck(
    value: object, errors: list[FieldError], *, field: str = "recheck"
) -> Recheck | None:
    """`recheck` as a JSON value: the re-check rule, or None when absent or null, or None with
    every broken rule added to `errors` (so a caller tells the two apart by `errors`)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append(FieldError(field, f"must be a JSON object, not {json_type(value)}"))
        return None
    found = len(errors)
    errors.extend(
        FieldError(
            f"{field}.{shown_field_name(name)}", "unknown field (allowed: verdicts, after_s, max)"
        )
        for name in value
        if name not in RECHECK_FIELDS
    )
    verdicts = _check_verdicts(value.get("verdicts"), f"{field}.verdicts", errors)
    after_s = value.get("after_s")
    after = (
        RECHECK_AFTER_DEFAULT_S
        if after_s is None
        else _whole_number_within(
            after_s, f"{field}.after_s", RECHECK_AFTER_MIN_S, RECHECK_AFTER_MAX_S, errors
        )
    )
    most = value.get("max")
    at_most = (
        RECHECK_MAX_DEFAULT
        if most is None
        else _whole_number_within(most, f"{field}.max", 1, RECHECK_MAX_LIMIT, errors)
    )
    if len(errors) > found or verdicts is None or after is None or at_most is None:
        return None
    return Recheck(verdicts=verdicts, after_s=after, max=at_most)


def _check_verdicts(value: object, field: str, errors: list[FieldError]) -> tuple[str, ...] | None:
    rule = "must be a non-empty array of verdicts (" + ", ".join(VERDICTS) + ")"
    if value is None:
        errors.append(FieldError(field, "is required and " + rule))
        return None
    if not isinstance(value, list) or not value:
        errors.append(FieldError(field, rule))
        return None
    unknown = [item for item in value if not isinstance(item, str) or item not in VERDICTS]
    if unknown:
        shown = ", ".join(
            f'"{shown_field_name(item)}"' if isinstance(item, str) else json_type(item)
            for item in unknown[:5]
        )
        errors.append(FieldError(field, f"{rule}; not a verdict: {shown}"))
        return None
    return tuple(verdict for verdict in VERDICTS if verdict in value)


def _whole_number_within(
    value: object, field: str, low: int, high: int, errors: list[FieldError]
) -> int | None:
    rule = _range_rule(low, high)
    if isinstance(value, bool) or not isinstance(value, int):
        # orjson reads 600.0 and 6e2 as floats, which "not a number" would not explain.
        found = "a number with a fraction or exponent" if isinstance(value, float) else None
        found = found or json_type(value)
        errors.append(FieldError(field, f"{rule}, not {found}"))
        return None
    if not low <= value <= high:
        errors.append(FieldError(field, rule))
        return None
    return value


def _range_rule(low: int, high: int) -> str:
    return f"must be a whole number from {low} to {high}"

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

from service.domain.intake import FieldError, json_type

MAX_AGE_MAX_S = 30 * 24 * 3600

_WHOLE_NUMBER = re.compile(r"[0-9]{1,12}")


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

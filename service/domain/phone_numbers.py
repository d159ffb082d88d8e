"""Phone numbers as checks take them: parsed, validated and normalised with Google's libphonenumber
(the `phonenumbers` package), as the contract's "Phone numbers and what an answer means" says.

Pure: no I/O. `parse_phone_number(text, countries)` is the one reading of a client's number, which
`POST /v1/checks`, the portal's check form (both through `checks.validate_check`) and every later
surface call; it answers a `PhoneNumber` or a `NumberRefusal` whose message names the rule broken
and never repeats the number (a refusal's text may reach a log).

Accepted: E.164 with or without '+' (`+525512345678`, `525512345678`); Mexico's old mobile prefix
(`+52 1` and 10 digits, taken as `52` and those 10 digits); spaces, dots, dashes and parentheses
between digits (`+52 (55) 1234-5678`). The number must be one of a country in the allowed list
(`PHONEBRIDGE_CHECK_COUNTRIES`) and `is_possible_number_with_reason` must answer IS_POSSIBLE for
it: local-only lengths (a number without its area code) are refused. Validity
(`is_valid_number`) is not asked: new prefixes reach libphonenumber's metadata late, and upstream
judges whether a number exists.

Choices where the contract is silent:
- Spaces, tabs and line breaks around the number are ignored (a CSV cell or a pasted form).
- A leading `00` (or any leading 0) is refused with its own reason rather than read as the
  international call prefix: the prefix depends on where the caller dials from (Colombia's are
  `005`, `007` and `009`, and libphonenumber strips one only given that region), and E.164 has no
  country code starting with 0, so the client is told to write the country code alone or after
  '+'.
- Letters are refused, extensions (`ext. 12`) included; so is any character other than the
  digits 0-9 and the separators above (full-width digits, '/', '#').
- A national dialling prefix written after the country code (`+57 0 300 123 4567`) is refused:
  libphonenumber keeps it as a leading zero, which upstream would be sent.
- The masked form keeps the country code as libphonenumber reads it and the last four digits.

How to extend: a new rule is a `NumberRule` member and a refusal in `parse_phone_number`, with a
row in tests/unit/test_phone_numbers.py's table of forms.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

DEFAULT_CHECK_COUNTRIES = ("MX", "CO")
# Far more than any number written with separators needs; keeps the parse cheap.
PHONE_NUMBER_MAX_CHARS = 64
# Kept unmasked at the end of a number: enough for a person to tell numbers apart.
MASK_KEEP_LAST = 4
# The label of the key (derived from PHONEBRIDGE_SECRET_KEY) that digests numbers.
NUMBER_DIGEST_KEY_LABEL = b"phonebridge phone number digest v1"

# Mexico dropped the mobile '1' after +52 in 2019; many CRMs still store numbers with it.
_MX_OLD_MOBILE_PREFIX = "521"
_MX_OLD_MOBILE_LENGTH = 3 + 10
_MX_COUNTRY_CODE = "52"

_CHARACTERS = re.compile(r"[0-9 .()+-]*")
# Each repetition takes exactly one digit, so the match never backtracks.
_FORM = re.compile(r"\+?[0-9](?:[ .()-]*[0-9])*")
_NOT_DIGITS = re.compile(r"[^0-9]")
_NON_GEOGRAPHIC_REGION = "001"  # libphonenumber's region of +800, +882 and the like

EXAMPLE = "+52 55 1234 5678"


class NumberRule(StrEnum):
    """The rule a refused number broke."""

    MISSING = "missing"
    TOO_MANY_CHARACTERS = "too_many_characters"
    LETTERS = "letters"
    CHARACTERS = "characters"
    FORM = "form"
    LEADING_ZERO = "leading_zero"
    NATIONAL_PREFIX = "national_prefix"
    COUNTRY_CODE = "country_code"
    COUNTRY = "country"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    LENGTH = "length"
    LOCAL_ONLY = "local_only"


@dataclass(frozen=True, slots=True)
class NumberRefusal:
    """A number that cannot be checked: the rule it broke, said for a person (never the number)."""

    rule: NumberRule
    message: str


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A number a check may be made for. `digits` are its E.164 digits without '+', what upstream
    is sent; they must never be stored or logged (the repr leaves them out): only `masked` is."""

    digits: str = field(repr=False)
    country_code: str
    region: str

    @property
    def masked(self) -> str:
        return mask_phone_number(self.digits, self.country_code)


def parse_check_countries(text: str) -> tuple[str, ...]:
    """The allowed regions of `PHONEBRIDGE_CHECK_COUNTRIES` (`MX,CO`): ISO 3166 codes that
    libphonenumber knows, upper-cased, duplicates dropped. ValueError saying what is wrong."""
    codes = [part.strip().upper() for part in text.split(",")]
    if not any(codes) or not all(codes):
        raise ValueError("expected comma-separated ISO country codes, e.g. MX,CO")
    unknown = [code for code in codes if code not in phonenumbers.SUPPORTED_REGIONS]
    if unknown:
        raise ValueError(
            f"unknown country code {unknown[0]!r}: expected ISO 3166 codes that libphonenumber "
            "knows, e.g. MX,CO"
        )
    return tuple(dict.fromkeys(codes))


def describe_countries(countries: Collection[str]) -> str:
    """`MX (+52), CO (+57)`: the allowed countries with their calling codes, for messages."""
    return ", ".join(
        f"{code} (+{phonenumbers.country_code_for_region(code)})" for code in countries
    )


def phone_number_rule(countries: Collection[str]) -> str:
    """What a valid `phone_number` is, for forms, schemas and refusals."""
    return (
        f"a phone number of {describe_countries(countries)} with its country code, "
        f"e.g. {EXAMPLE} or {EXAMPLE.replace(' ', '').removeprefix('+')}: digits after an "
        "optional '+', with spaces, dots, dashes or parentheses between them"
    )


def parse_phone_number(text: object, countries: Collection[str]) -> PhoneNumber | NumberRefusal:
    """Read a client's `phone_number` as the contract says: the normalised number, or the first
    rule it breaks. `countries` are the allowed ISO regions (`parse_check_countries`)."""
    if not isinstance(text, str) or not text.strip():
        return NumberRefusal(NumberRule.MISSING, f"is required: {phone_number_rule(countries)}")
    if len(text) > PHONE_NUMBER_MAX_CHARS:
        return NumberRefusal(
            NumberRule.TOO_MANY_CHARACTERS, f"must be at most {PHONE_NUMBER_MAX_CHARS} characters"
        )
    written = text.strip()
    if any(character.isalpha() for character in written):
        return NumberRefusal(
            NumberRule.LETTERS,
            "must be written in digits: letters (vanity numbers such as 1-800-FLOWERS, "
            "extensions) are not accepted",
        )
    if not _CHARACTERS.fullmatch(written):
        return NumberRefusal(
            NumberRule.CHARACTERS,
            "may hold only the digits 0-9, spaces, dots, dashes, parentheses and a leading '+'",
        )
    if not _FORM.fullmatch(written):
        return NumberRefusal(
            NumberRule.FORM,
            "a '+' may only come first, and spaces, dots, dashes and parentheses only between "
            "digits",
        )
    digits = _NOT_DIGITS.sub("", written)
    if digits.startswith("0"):
        return NumberRefusal(
            NumberRule.LEADING_ZERO,
            "starts with 0: write the country code alone or after '+', without an international "
            f"call prefix such as 00 (e.g. {EXAMPLE})",
        )
    if digits.startswith(_MX_OLD_MOBILE_PREFIX) and len(digits) == _MX_OLD_MOBILE_LENGTH:
        digits = _MX_COUNTRY_CODE + digits[len(_MX_OLD_MOBILE_PREFIX) :]
    try:
        number = phonenumbers.parse("+" + digits, None)
    except NumberParseException as error:
        return _parse_refusal(error, countries)
    return _number_of_allowed_country(number, countries)


def mask_phone_number(digits: str, country_code: str) -> str:
    """The country code and the last four digits, the rest masked:
    `525512341234` -> `52******1234`."""
    hidden = max(len(digits) - len(country_code) - MASK_KEEP_LAST, 0)
    return country_code + "*" * hidden + digits[len(country_code) + hidden :]


def number_digest(key: bytes, number: PhoneNumber) -> bytes:
    """What recognises a number without keeping it (an Idempotency-Key's body, a list's
    duplicates, an earlier answer for `max_age_s`): HMAC-SHA256 of its normalised digits under
    `key`, the deployment's key for NUMBER_DIGEST_KEY_LABEL. Without the key a digest cannot be
    matched against the few billion numbers a country has."""
    return digest_of_digits(key, number.digits)


def digest_of_digits(key: bytes, digits: str) -> bytes:
    """`number_digest` of a number already normalised to its E.164 digits (a check job's items,
    read by the same rule)."""
    return hmac.new(key, digits.encode(), hashlib.sha256).digest()


def number_digests(keys: Sequence[bytes], number: PhoneNumber) -> tuple[bytes, ...]:
    """`number_digest` under each of `keys` (the current key first, then a rotation's previous
    ones: service/number_digests.py). A digest kept for later is written with the first; a
    lookup of kept digests matches any of them, so a number seen before a rotation is still
    recognised after it."""
    return tuple(number_digest(key, number) for key in keys)


def _number_of_allowed_country(
    number: phonenumbers.PhoneNumber, countries: Collection[str]
) -> PhoneNumber | NumberRefusal:
    code = number.country_code
    if code is None:  # parse always sets it; the package's types allow None
        return _no_country_code(countries)
    region = _region_of(number, code, countries)
    if region not in countries:
        where = (
            f"has the country code +{code}, which belongs to no country"
            if region == _NON_GEOGRAPHIC_REGION
            else f"is a number of {region} (+{code})"
        )
        return NumberRefusal(
            NumberRule.COUNTRY,
            f"{where}; only numbers of {describe_countries(countries)} are checked",
        )
    if _national_prefix_kept(number, region):
        return NumberRefusal(
            NumberRule.NATIONAL_PREFIX,
            f"holds {region}'s national dialling prefix 0 after the country code: write the "
            f"national number without it after +{code}",
        )
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != ValidationResult.IS_POSSIBLE:
        return _possibility_refusal(reason, region, code)
    digits = phonenumbers.format_number(number, PhoneNumberFormat.E164).removeprefix("+")
    return PhoneNumber(digits=digits, country_code=str(code), region=region)


def _region_of(number: phonenumbers.PhoneNumber, code: int, countries: Collection[str]) -> str:
    """The region of a number: the one region of its country code, or, for a code that regions
    share (+1, +44), the one libphonenumber places it in; a number it places in none is taken as
    of an allowed region with that code (possible is enough, as everywhere here)."""
    regions = phonenumbers.region_codes_for_country_code(code)
    if len(regions) == 1:
        return regions[0]
    placed = phonenumbers.region_code_for_number(number)
    if placed is not None:
        return placed
    return next((region for region in regions if region in countries), regions[0])


def _national_prefix_kept(number: phonenumbers.PhoneNumber, region: str) -> bool:
    """A national number that starts with 0 in a region whose numbers never do, as written
    after its 0 trunk prefix (`+57 0 300 ...`): read again, its E.164 digits would lose that 0,
    so no normal form could be trusted. (Italy's numbers do start with 0: it has no prefix.)"""
    if not number.italian_leading_zero:
        return False
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    prefix = None if metadata is None else metadata.national_prefix
    return prefix is not None and prefix.startswith("0")


def _possibility_refusal(reason: int, region: str, code: int) -> NumberRefusal:
    country = f"{region} (+{code})"
    if reason == ValidationResult.TOO_SHORT:
        return NumberRefusal(NumberRule.TOO_SHORT, f"has too few digits for a number of {country}")
    if reason == ValidationResult.TOO_LONG:
        return NumberRefusal(NumberRule.TOO_LONG, f"has too many digits for a number of {country}")
    if reason == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        return NumberRefusal(
            NumberRule.LOCAL_ONLY,
            f"can only be dialled locally: give the full national number of {country} with its "
            "area code",
        )
    return NumberRefusal(NumberRule.LENGTH, f"has no length that a number of {country} can have")


def _parse_refusal(error: NumberParseException, countries: Collection[str]) -> NumberRefusal:
    if error.error_type == NumberParseException.TOO_LONG:
        return NumberRefusal(NumberRule.TOO_LONG, "has more digits than any phone number")
    if error.error_type == NumberParseException.INVALID_COUNTRY_CODE:
        return _no_country_code(countries)
    return NumberRefusal(NumberRule.TOO_SHORT, "has too few digits to be a phone number")


def _no_country_code(countries: Collection[str]) -> NumberRefusal:
    return NumberRefusal(
        NumberRule.COUNTRY_CODE,
        f"does not start with a country code: {phone_number_rule(countries)}",
    )

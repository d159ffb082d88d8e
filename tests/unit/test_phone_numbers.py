"""How a client's phone number is read (service/domain/phone_numbers.py): the real-world forms
people and CRMs write, each with the number it normalises to or the rule it breaks; the mask; the
keyed digest; the allowed countries."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from service.domain.phone_numbers import (
    DEFAULT_CHECK_COUNTRIES,
    EXAMPLE,
    MASK_KEEP_LAST,
    PHONE_NUMBER_MAX_CHARS,
    NumberRefusal,
    NumberRule,
    PhoneNumber,
    mask_phone_number,
    number_digest,
    parse_check_countries,
    parse_phone_number,
    phone_number_rule,
)

COUNTRIES = DEFAULT_CHECK_COUNTRIES
KEY = b"k" * 32

# (as written, what upstream is sent) - every form a number of Mexico or Colombia comes in.
ACCEPTED = [
    # Mexico, mobile and landline alike since 2019: 10 digits after +52
    ("+525512345678", "525512345678"),
    ("525512345678", "525512345678"),
    ("+52 55 1234 5678", "525512345678"),
    ("+52 (55) 1234-5678", "525512345678"),
    ("52 (55) 1234 5678", "525512345678"),
    ("+52.55.1234.5678", "525512345678"),
    ("+52-55-1234-5678", "525512345678"),
    ("+52 55.1234-5678", "525512345678"),
    ("+52 55 12 34 56 78", "525512345678"),
    ("+52  55  1234  5678", "525512345678"),
    (" +52 55 1234 5678 ", "525512345678"),
    ("+52 55 1234 5678\n", "525512345678"),
    ("+52 33 1234 5678", "523312345678"),  # Guadalajara
    ("+52 81 1234 5678", "528112345678"),  # Monterrey
    ("+52 664 123 4567", "526641234567"),  # Tijuana: a three-digit area code
    ("+52 222 123 4567", "522221234567"),  # Puebla landline
    # Mexico's old mobile prefix: +52 1 and 10 digits
    ("+5215512345678", "525512345678"),
    ("5215512345678", "525512345678"),
    ("+52 1 55 1234 5678", "525512345678"),
    ("+52 1 (55) 1234-5678", "525512345678"),
    ("52.1.55.1234.5678", "525512345678"),
    ("+52 1 664 123 4567", "526641234567"),
    ("+52 1 81 1234 5678", "528112345678"),
    # Colombia: mobiles 3xx, landlines 60x since 2021's plan
    ("+573001234567", "573001234567"),
    ("573001234567", "573001234567"),
    ("+57 300 123 4567", "573001234567"),
    ("57 310 555 1234", "573105551234"),
    ("+57 320-555-1234", "573205551234"),
    ("+57 (350) 555.1234", "573505551234"),
    ("+57 601 234 5678", "576012345678"),  # Bogotá
    ("57(601)2345678", "576012345678"),
    ("+57 (604) 444-1234", "576044441234"),  # Medellín
    ("+57 602 345 6789", "576023456789"),  # Cali
    ("+57 605 345 6789", "576053456789"),  # Barranquilla
    ("+57 (0) 601 234 5678", "576012345678"),  # the national prefix, which libphonenumber drops
]

# (as written, the rule it breaks)
REFUSED = [
    # a leading 00 (the international call prefix) or any leading 0
    ("0052 55 1234 5678", NumberRule.LEADING_ZERO),
    ("00 57 300 123 4567", NumberRule.LEADING_ZERO),
    ("+0052 55 1234 5678", NumberRule.LEADING_ZERO),
    ("055 1234 5678", NumberRule.LEADING_ZERO),
    # a national dialling prefix after the country code
    ("+57 0 300 123 4567", NumberRule.NATIONAL_PREFIX),
    ("+57 03 1234567", NumberRule.NATIONAL_PREFIX),
    # letters: vanity numbers, extensions, words
    ("1-800-FLOWERS", NumberRule.LETTERS),
    ("+52 55 CALL NOW", NumberRule.LETTERS),
    ("+52 55 1234 5678 ext. 12", NumberRule.LETTERS),
    ("+52 55 1234 5678 x12", NumberRule.LETTERS),
    ("+52 55 1234 567O", NumberRule.LETTERS),  # a letter O for a zero
    # other characters
    ("52/55/1234/5678", NumberRule.CHARACTERS),
    ("+52 55 1234 5678 #", NumberRule.CHARACTERS),
    ("+52\t55 1234 5678", NumberRule.CHARACTERS),
    ("+52 \uff15\uff15 1234 5678", NumberRule.CHARACTERS),  # full-width digits
    ("+52 55 1234 5678;", NumberRule.CHARACTERS),
    # '+' and separators out of place
    ("++525512345678", NumberRule.FORM),
    ("52+5512345678", NumberRule.FORM),
    ("+ 52 55 1234 5678", NumberRule.FORM),
    ("(52) 55 1234 5678", NumberRule.FORM),
    ("-52 55 1234 5678", NumberRule.FORM),
    ("+52 55 1234 5678-", NumberRule.FORM),
    ("+", NumberRule.FORM),
    # no country code, or one that is no country's
    ("+999 1234 5678", NumberRule.COUNTRY_CODE),
    # national numbers without their country code read as another country's
    ("5512345678", NumberRule.COUNTRY),  # +55: Brazil
    ("3001234567", NumberRule.COUNTRY),  # +30: Greece
    # other countries
    ("+1 415 555 0123", NumberRule.COUNTRY),
    ("+1 (604) 555-0123", NumberRule.COUNTRY),
    ("+34 612 345 678", NumberRule.COUNTRY),
    ("+44 20 7946 0958", NumberRule.COUNTRY),
    ("+55 11 91234 5678", NumberRule.COUNTRY),
    ("+49 151 12345678", NumberRule.COUNTRY),
    ("+7 912 345 67 89", NumberRule.COUNTRY),
    ("+800 1234 5678", NumberRule.COUNTRY),  # international freephone: no country at all
    # too short, too long, or a length no number of the country has
    ("52", NumberRule.TOO_SHORT),
    ("+52 5 1234 5678", NumberRule.TOO_SHORT),
    ("52 55 1234 567", NumberRule.TOO_SHORT),
    ("52 55 1234 56789", NumberRule.TOO_LONG),
    ("+52 11 55 1234 5678", NumberRule.TOO_LONG),
    ("+52 044 55 1234 5678", NumberRule.TOO_LONG),  # the old mobile dialling prefix
    ("+57 300 123 4567 890", NumberRule.TOO_LONG),
    ("5" * 40, NumberRule.TOO_LONG),
    ("+57 300 123 456", NumberRule.LENGTH),
    # local-only lengths: a number without its area code
    ("+52 5512 3456", NumberRule.LOCAL_ONLY),
    ("+57 300 1234", NumberRule.LOCAL_ONLY),
    ("+57 601 2345", NumberRule.LOCAL_ONLY),
    # nothing, or far too much
    ("", NumberRule.MISSING),
    ("   ", NumberRule.MISSING),
    ("5" * (PHONE_NUMBER_MAX_CHARS - 1) + " 1", NumberRule.TOO_MANY_CHARACTERS),
]


def parsed(text: object, countries: tuple[str, ...] = COUNTRIES) -> PhoneNumber:
    number = parse_phone_number(text, countries)
    assert isinstance(number, PhoneNumber), number
    return number


def refusal(text: object, countries: tuple[str, ...] = COUNTRIES) -> NumberRefusal:
    number = parse_phone_number(text, countries)
    assert isinstance(number, NumberRefusal), number
    return number


def test_the_table_holds_at_least_forty_real_world_forms() -> None:
    assert len(ACCEPTED) + len(REFUSED) >= 40
    assert len({text for text, _ in ACCEPTED + REFUSED}) == len(ACCEPTED) + len(REFUSED)


@pytest.mark.parametrize(("text", "digits"), ACCEPTED)
def test_a_possible_number_of_an_allowed_country_is_normalised_to_its_e164_digits(
    text: str, digits: str
) -> None:
    assert parsed(text).digits == digits


@pytest.mark.parametrize(("text", "rule"), REFUSED)
def test_a_number_that_breaks_a_rule_is_refused_naming_the_rule(
    text: str, rule: NumberRule
) -> None:
    refused = refusal(text)
    assert refused.rule is rule
    # The rule, never the number: a refusal's text may reach a log.
    digits = "".join(ch for ch in text if ch.isdigit())
    assert len(digits) < 6 or digits not in refused.message


def test_mexicos_old_mobile_prefix_and_the_new_form_are_the_same_number() -> None:
    assert parsed("+52 1 55 1234 5678") == parsed("525512345678")


@pytest.mark.parametrize(
    ("text", "region", "code"),
    [("+52 55 1234 5678", "MX", "52"), ("+57 300 123 4567", "CO", "57")],
)
def test_a_number_knows_its_region_and_country_code(text: str, region: str, code: str) -> None:
    number = parsed(text)
    assert (number.region, number.country_code) == (region, code)


def test_a_refused_country_is_named_with_the_allowed_ones() -> None:
    message = refusal("+1 415 555 0123").message
    assert "US (+1)" in message
    assert "MX (+52), CO (+57)" in message


def test_the_allowed_countries_decide() -> None:
    us = ("US",)
    assert parsed("+1 415 555 0123", us).region == "US"
    assert refusal("+52 55 1234 5678", us).rule is NumberRule.COUNTRY
    assert refusal("+1 604 555 0123", us).rule is NumberRule.COUNTRY  # Canada shares +1
    assert parsed("+57 300 123 4567", ("CO",)).region == "CO"
    assert refusal("+57 300 123 4567", ("MX",)).rule is NumberRule.COUNTRY


def test_a_number_of_a_shared_code_placed_in_no_region_is_of_the_allowed_one() -> None:
    # 999 is no area code of the North American plan, but the number has a possible length.
    assert parsed("+1 999 555 0123", ("CA",)).region == "CA"


@pytest.mark.parametrize("value", [None, 525512345678, ["525512345678"], {"n": 1}])
def test_anything_but_text_is_missing(value: object) -> None:
    assert refusal(value).rule is NumberRule.MISSING


def test_possible_is_enough_validity_is_upstreams_to_judge() -> None:
    # Colombia's old 8-digit Bogotá form: possible for libphonenumber, not valid any more.
    number = phonenumbers.parse("+5712345678")
    assert not phonenumbers.is_valid_number(number)
    assert parsed("+57 1 234 5678").digits == "5712345678"


def test_the_repr_never_shows_the_number() -> None:
    assert "5512345678" not in repr(parsed("+52 55 1234 5678"))


def test_the_rule_names_the_allowed_countries_and_an_example() -> None:
    rule = phone_number_rule(COUNTRIES)
    assert "MX (+52), CO (+57)" in rule
    assert EXAMPLE in rule
    assert parsed(EXAMPLE).digits == "525512345678"


# --- normalisation is a fixed point ------------------------------------------------------------

SEPARATOR = st.sampled_from(["", " ", "  ", ".", "-", " - ", "(", ")", ") ", " ("])


@st.composite
def written_numbers(draw: st.DrawFn, national_lengths: st.SearchStrategy[int]) -> str:
    """A number as a person or a CRM might write it: a country code, maybe Mexico's old '1', the
    national digits, separators anywhere between digits, maybe a '+'."""
    code = draw(st.sampled_from(["52", "57"]))
    size = draw(national_lengths)
    national = draw(st.text(alphabet="0123456789", min_size=size, max_size=size))
    if code == "52" and draw(st.booleans()):
        national = "1" + national
    digits = code + national
    written = digits[0] + "".join(draw(SEPARATOR) + digit for digit in digits[1:])
    return ("+" if draw(st.booleans()) else "") + written


# Mostly lengths that Mexico's and Colombia's numbers have, so most drawn numbers are possible.
possible_numbers = written_numbers(st.sampled_from([8, 10, 10, 10, 11]))


@given(possible_numbers)
def test_normalising_a_normalised_number_changes_nothing(text: str) -> None:
    number = parse_phone_number(text, COUNTRIES)
    assume(isinstance(number, PhoneNumber))
    assert isinstance(number, PhoneNumber)
    assert parsed(number.digits) == number
    assert parsed("+" + number.digits) == number
    assert number.digits.isdigit()
    assert number.region in COUNTRIES


@given(
    st.one_of(
        written_numbers(st.integers(min_value=0, max_value=20)),
        st.text(alphabet="0123456789 +-.()", max_size=30),
    )
)
def test_any_digits_and_separators_are_read_or_refused_and_a_read_number_is_a_fixed_point(
    text: str,
) -> None:
    number = parse_phone_number(text, COUNTRIES)
    if isinstance(number, PhoneNumber):
        assert parsed(number.digits) == number
    else:
        assert number.message


# --- the mask --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("+52 1 55 1234 5678", "52******5678"),
        ("525512341234", "52******1234"),
        ("+57 300 123 4567", "57******4567"),
        ("+57 1 234 5678", "57****5678"),
    ],
)
def test_the_mask_keeps_the_country_code_and_the_last_four_digits(text: str, masked: str) -> None:
    assert parsed(text).masked == masked


@given(possible_numbers)
def test_a_mask_never_shows_more_than_the_country_code_and_the_last_four(text: str) -> None:
    number = parse_phone_number(text, COUNTRIES)
    assume(isinstance(number, PhoneNumber))
    assert isinstance(number, PhoneNumber)
    masked, code = number.masked, number.country_code
    assert len(masked) == len(number.digits)
    assert masked.startswith(code)
    assert masked.endswith(number.digits[-MASK_KEEP_LAST:])
    assert set(masked[len(code) : -MASK_KEEP_LAST]) <= {"*"}
    assert sum(1 for ch in masked if ch != "*") <= len(code) + MASK_KEEP_LAST


@given(st.from_regex(r"[1-9][0-9]{0,14}", fullmatch=True), st.sampled_from(["1", "52", "593"]))
def test_mask_phone_number_shows_at_most_the_code_and_four_digits_whatever_the_length(
    digits: str, code: str
) -> None:
    digits = code + digits
    masked = mask_phone_number(digits, code)
    assert len(masked) == len(digits)
    assert sum(1 for ch in masked if ch != "*") <= len(code) + MASK_KEEP_LAST


# --- the keyed digest ------------------------------------------------------------------------


def test_every_form_of_a_number_has_one_digest() -> None:
    forms = ["+52 1 55 1234 5678", "525512345678", "+52 (55) 1234-5678", "5215512345678"]
    assert len({number_digest(KEY, parsed(form)) for form in forms}) == 1


def test_the_digest_depends_on_the_number_and_the_key() -> None:
    one = parsed("525512345678")
    other = parsed("525512345679")
    assert number_digest(KEY, one) != number_digest(KEY, other)
    assert number_digest(KEY, one) != number_digest(b"x" * 32, one)
    assert len(number_digest(KEY, one)) == 32
    assert b"525512345678" not in number_digest(KEY, one)


# --- the allowed countries -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "countries"),
    [
        ("MX,CO", ("MX", "CO")),
        ("mx, co", ("MX", "CO")),
        ("CO", ("CO",)),
        ("MX,CO,MX", ("MX", "CO")),
        ("US,CA", ("US", "CA")),
    ],
)
def test_check_countries_are_iso_codes_libphonenumber_knows(
    text: str, countries: tuple[str, ...]
) -> None:
    assert parse_check_countries(text) == countries


@pytest.mark.parametrize("text", ["", " ", "MX,", "MX,,CO", "XX", "MEX", "52", "001"])
def test_anything_else_is_not_a_list_of_countries(text: str) -> None:
    with pytest.raises(ValueError, match="ISO"):
        parse_check_countries(text)

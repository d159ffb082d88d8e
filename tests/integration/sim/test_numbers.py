"""The simulator's numbers (service/sim/numbers.py): a number scripted to answer differently on
successive submits (through the control API and the command line), every number's submits
counted, invalid numbers refused as upstream judges them, and the plausible numbers it makes up."""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx
import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.sim.command import configure, options_from
from service.sim.numbers import (
    PLAUSIBLE_PREFIXES,
    NumberScripts,
    is_valid_number,
    number_digits,
    parse_number_scripts,
    plausible_phone_number,
)
from service.sim.server import SimProcess, SimServer
from tests.support.upstream import API_ID, API_SECRET

SUBMIT = "/check/phone_number/o1"
TASK_RESULT = "/check/phone_number/task_result/o1"
NUMBER = "525512345678"


def submit(upstream: httpx.Client, phone_number: str = NUMBER) -> dict[str, object]:
    response = upstream.post(SUBMIT, json={"phone_number": phone_number})
    assert response.status_code in (200, 400), response.text
    body: dict[str, object] = response.json()
    return body


def poll(upstream: httpx.Client, task_id: object) -> dict[str, object]:
    body: dict[str, object] = upstream.post(TASK_RESULT, json={"task_id": task_id}).json()
    return body


def phone_status(answer: dict[str, object]) -> object:
    result = answer.get("result")
    return result.get("phone_status") if isinstance(result, dict) else None


# --- scripted numbers through the control API ----------------------------------------------------


def test_a_scripted_number_answers_each_submit_with_its_next_script_then_the_last_again(
    sim: SimServer, upstream: httpx.Client
) -> None:
    sim.control.configure(submit_script="busy-0")
    view = sim.control.script_number(NUMBER, "temp_unavailable", "line_abnormal", "ring-1")
    assert view == {
        "phone_number": NUMBER,
        "scripts": ["temp_unavailable-0", "line_abnormal-0", "ring-1"],
        "submits": 0,
    }

    first, second, third, fourth = (submit(upstream) for _ in range(4))

    assert phone_status(first) == "temp_unavailable"
    assert phone_status(second) == "line_abnormal"
    for later in (third, fourth):
        assert str(later["task_id"]).startswith("sim-ring-1-")
        assert poll(upstream, later["task_id"])["status"] == "PENDING"
        assert phone_status(poll(upstream, later["task_id"])) == "ring"
    assert sim.control.number(NUMBER)["submits"] == 4
    # Another number keeps the submit script.
    assert phone_status(submit(upstream, "573001234567")) == "busy"


def test_a_number_written_with_a_plus_is_the_same_number(
    sim: SimServer, upstream: httpx.Client
) -> None:
    sim.control.script_number("+" + NUMBER, "empty")
    assert phone_status(submit(upstream, NUMBER)) == "empty"
    assert phone_status(submit(upstream, "+" + NUMBER)) == "empty"
    assert sim.control.number("+" + NUMBER)["submits"] == 2


def test_scripting_again_starts_over_and_no_scripts_unscripts(
    sim: SimServer, upstream: httpx.Client
) -> None:
    sim.control.configure(submit_script="connected-0")
    sim.control.script_number(NUMBER, "temp_unavailable", "ring")
    submit(upstream)
    sim.control.script_number(NUMBER, "temp_unavailable", "ring")
    assert phone_status(submit(upstream)) == "temp_unavailable"
    sim.control.script_number(NUMBER)
    assert phone_status(submit(upstream)) == "connected"
    assert sim.control.config()["submit_script"] == "connected-0"


def test_every_numbers_accepted_submits_are_counted(sim: SimServer, upstream: httpx.Client) -> None:
    for _ in range(3):
        submit(upstream, "573001234567")
    submit(upstream, "5712345678")  # refused: not counted
    assert sim.control.number("573001234567") == {
        "phone_number": "573001234567",
        "scripts": [],
        "submits": 3,
    }
    assert sim.control.number("5712345678")["submits"] == 0


def test_the_scripted_numbers_are_listed_and_a_reset_forgets_them(
    sim: SimServer, upstream: httpx.Client
) -> None:
    sim.control.script_number(NUMBER, "ring")
    sim.control.script_number("573001234567", "busy", "empty")
    listed = httpx.get(f"{sim.base_url}/_sim/numbers").json()["numbers"]
    assert [n["phone_number"] for n in listed] == [NUMBER, "573001234567"]
    sim.control.reset()
    assert httpx.get(f"{sim.base_url}/_sim/numbers").json() == {"numbers": []}


@pytest.mark.parametrize(
    ("number", "body"),
    [
        (NUMBER, {"scripts": ["ring", "nonsense"]}),
        (NUMBER, {"scripts": "ring"}),
        (NUMBER, {"script": ["ring"]}),
        ("12345", {"scripts": ["ring"]}),
        ("52-55-1234", {"scripts": ["ring"]}),
    ],
)
def test_a_bad_number_script_is_refused_with_422(
    sim: SimServer, number: str, body: dict[str, object]
) -> None:
    response = httpx.put(f"{sim.base_url}/_sim/numbers/{number}", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


# --- the command line ----------------------------------------------------------------------------


def test_number_scripts_from_the_command_line_survive_a_reset(tmp_path: Path) -> None:
    sim = SimProcess(
        [
            "--api-id",
            API_ID,
            "--api-secret",
            API_SECRET,
            "--submit-script",
            "busy-0",
            "--number-script",
            f"+{NUMBER}=temp_unavailable,ring-0",
        ],
        log_path=tmp_path / "sim.log",
    )
    sim.start()
    try:
        headers = {"X-DF-API-ID": API_ID, "X-DF-API-SECRET": API_SECRET}
        with httpx.Client(base_url=sim.base_url, headers=headers, timeout=5) as upstream:
            answers = [phone_status(submit(upstream)) for _ in range(3)]
            httpx.post(f"{sim.base_url}/_sim/reset").raise_for_status()
            after_reset = phone_status(submit(upstream))
    finally:
        sim.stop()
    assert answers == ["temp_unavailable", "ring", "ring"]
    assert after_reset == "temp_unavailable"


def sim_arguments(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="upstream-sim", exit_on_error=False)
    configure(parser)
    return parser.parse_args(args)


def test_number_script_options_become_the_simulators_start_scripts() -> None:
    args = sim_arguments("--number-script", f"+{NUMBER}=temp_unavailable, ring-2")
    scripts = options_from(args, now=0.0).number_scripts
    assert {number: [s.text for s in texts] for number, texts in scripts.items()} == {
        NUMBER: ["temp_unavailable-0", "ring-2"]
    }


@pytest.mark.parametrize(
    "option", ["525512345678", "525512345678=", "=ring", "52x=ring", "525512345678=ring,zzz"]
)
def test_a_bad_number_script_option_is_refused_saying_the_form(option: str) -> None:
    with pytest.raises(argparse.ArgumentError, match="NUMBER=SCRIPT"):
        sim_arguments("--number-script", option)


# --- what upstream refuses, and the numbers the simulator makes up -------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "5712345678",  # Bogotá's old 8-digit numbers: possible, no longer valid
        "520012345678",
        "99912345678",  # no country
        "11234567890",  # possible for the US, but no area code starts with 1
    ],
)
def test_a_number_libphonenumber_finds_invalid_is_refused_with_invalid_argument(
    sim: SimServer, upstream: httpx.Client, number: str
) -> None:
    response = upstream.post(SUBMIT, json={"phone_number": number})
    assert response.status_code == 400
    assert response.json()["status"] == "INVALID_ARGUMENT"
    assert response.json()["reason"] == "argument 'phone_number': invalid"


@given(st.text(max_size=40))
def test_made_up_numbers_are_valid_mexican_or_colombian_numbers(seed: str) -> None:
    number = plausible_phone_number(seed)
    assert number == plausible_phone_number(seed)
    assert len(number) == 12
    assert number.startswith(PLAUSIBLE_PREFIXES)
    assert is_valid_number(number)
    region = phonenumbers.region_code_for_number(phonenumbers.parse("+" + number))
    assert region in ("MX", "CO")


def test_made_up_numbers_come_from_every_prefix() -> None:
    numbers = [plausible_phone_number(str(i)) for i in range(200)]
    assert all(any(n.startswith(prefix) for n in numbers) for prefix in PLAUSIBLE_PREFIXES)


@pytest.mark.parametrize(
    ("text", "digits"),
    [("525512345678", NUMBER), ("+525512345678", NUMBER), ("12345", None), ("+52 55", None)],
)
def test_a_number_is_its_digits_after_an_optional_plus(text: str, digits: str | None) -> None:
    assert number_digits(text) == digits


def test_number_scripts_need_at_least_one_known_script() -> None:
    assert parse_number_scripts([]) is None
    assert parse_number_scripts(["ring", "bogus"]) is None
    scripts = parse_number_scripts(["temp_unavailable", "ring-2-1s"])
    assert scripts is not None
    assert [script.text for script in scripts] == ["temp_unavailable-0", "ring-2-1s"]


def test_an_unscripted_number_takes_no_script_but_is_counted() -> None:
    numbers = NumberScripts()
    assert numbers.take(NUMBER) is None
    assert numbers.view(NUMBER)["submits"] == 1

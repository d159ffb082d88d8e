"""The pure parts of a 100,000-item check job, timed and weighed in this process: reading the
CSV and the JSON body (service.domain.job_csv and job_input), the dedupe plan with an HMAC digest
(service.domain.job_plan), and writing the results as CSV and NDJSON
(service.domain.job_results).

    .venv/bin/python bench/job_input.py                 # 100,000 items, 5 rounds
    .venv/bin/python bench/job_input.py --items 20000 --rounds 3

The number rule is the one POST /v1/checks applies (`service.domain.checks.validate_check`),
and, to tell the parser's cost from the rule's, a rule that accepts the digits as they are.
Times are medians of --rounds rounds; memory is tracemalloc's peak of Python allocations while
reading (the body itself excluded, as the API holds it anyway) and what the result keeps. The
load average is printed before and after: run it alone, `flock /tmp/phonebridge-bench.lock
.venv/bin/python bench/job_input.py`. The issue's figure (creating a 100,000-item CSV job raises
the API's RSS by < 100 MiB, answers in < 10 s) is the API's, with the store's writes; this is the
part of it that the domain costs.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import hmac
import json
import os
import random
import statistics
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

from service.domain.checks import validate_check
from service.domain.intake import FieldError, Rejection
from service.domain.job_csv import job_from_csv
from service.domain.job_input import JobRequest, NumberReader, job_from_json
from service.domain.job_plan import plan_dedupe
from service.domain.job_results import ResultRow, results_csv, results_ndjson
from service.domain.jsontext import parse_request_json
from service.domain.phone_numbers import DEFAULT_CHECK_COUNTRIES

T = TypeVar("T")
KEY = hashlib.sha256(b"bench digest key").digest()
MIB = 1024 * 1024


def rule_of_checks(text: str) -> str | FieldError:
    checked = validate_check({"phone_number": text}, DEFAULT_CHECK_COUNTRIES)
    return checked.errors[0] if isinstance(checked, Rejection) else checked.number.digits


def digits_as_given(text: str) -> str | FieldError:
    return text


def digest(number: str) -> bytes:
    return hmac.new(KEY, number.encode(), hashlib.sha256).digest()


def numbers(count: int, seed: int = 7) -> list[str]:
    """Mexican mobile numbers, 3% repeated, 1% broken."""
    rng = random.Random(seed)
    made = [f"5255{rng.randrange(10**8):08d}" for _ in range(count)]
    for index in rng.sample(range(count), count // 33):
        made[index] = made[rng.randrange(count)]
    for index in rng.sample(range(count), count // 100):
        made[index] = "55-BAD"
    return made


def csv_body(phone_numbers: list[str]) -> bytes:
    lines = ["phone_number,reference,amount"]
    lines += [f"{number},loan-{line},{line * 10}" for line, number in enumerate(phone_numbers, 1)]
    return ("\r\n".join(lines) + "\r\n").encode()


def json_body(phone_numbers: list[str]) -> bytes:
    items = [
        {"phone_number": number, "reference": f"loan-{line}", "metadata": {"branch": line % 40}}
        for line, number in enumerate(phone_numbers, 1)
    ]
    return json.dumps({"items": items, "name": "bench"}).encode()


def timed(work: Callable[[], T], rounds: int) -> tuple[float, T]:
    """The median seconds of `rounds` runs, and the last run's result."""
    seconds = []
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def peak_mib(work: Callable[[], object]) -> tuple[float, float]:
    """(peak while working, kept after) of Python allocations, in MiB."""
    gc.collect()
    tracemalloc.start()
    result = work()
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak / MIB, kept / MIB


def written_bytes(
    writer: Callable[[Iterable[ResultRow]], Iterator[bytes]], rows: list[ResultRow]
) -> int:
    return sum(len(chunk) for chunk in writer(rows))


def loadavg() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {loadavg()}")
    phone_numbers = numbers(args.items)
    csv_bytes = csv_body(phone_numbers)
    json_bytes_ = json_body(phone_numbers)
    print(
        f"{args.items} items; CSV body {len(csv_bytes) / MIB:.1f} MiB, JSON body "
        f"{len(json_bytes_) / MIB:.1f} MiB"
    )

    rules: list[tuple[str, NumberReader]] = [
        ("rule of POST /v1/checks", rule_of_checks),
        ("digits as given", digits_as_given),
    ]
    for label, rule in rules:
        read = partial(job_from_csv, csv_bytes, [], rule)
        seconds, job = timed(read, args.rounds)
        assert isinstance(job, JobRequest), job
        peak, kept = peak_mib(read)
        print(
            f"CSV read ({label}): {seconds:.3f} s = {args.items / seconds:,.0f} items/s; "
            f"peak {peak:.1f} MiB, kept {kept:.1f} MiB "
            f"({len(job.items)} items, {len(job.rejections)} rejected)"
        )

    seconds, value = timed(lambda: parse_request_json(json_bytes_), args.rounds)
    print(f"JSON body parsed (parse_request_json, as the API reads it): {seconds:.3f} s")
    seconds, job = timed(lambda: job_from_json(value, rule_of_checks), args.rounds)
    assert isinstance(job, JobRequest), job
    peak, kept = peak_mib(lambda: job_from_json(value, rule_of_checks))
    print(
        f"JSON read (rule of POST /v1/checks): {seconds:.3f} s = {args.items / seconds:,.0f} "
        f"items/s; peak {peak:.1f} MiB beyond the parsed body, kept {kept:.1f} MiB"
    )
    peak, _ = peak_mib(lambda: job_from_json(parse_request_json(json_bytes_), rule_of_checks))
    print(f"JSON parsed and read together: peak {peak:.1f} MiB")

    accepted = job.items
    seconds, plan = timed(lambda: plan_dedupe(accepted, digest), args.rounds)
    print(
        f"dedupe plan (HMAC-SHA256 digests): {seconds:.3f} s = "
        f"{len(accepted) / seconds:,.0f} items/s; {plan.duplicates} duplicates"
    )

    done = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    rows = [
        ResultRow(item.line, item.reference, "52******5678", "completed", "connected", "live",
                  False, f"T-{item.line}", done)
        for item in accepted
    ]  # fmt: skip
    for label, writer in (("CSV", results_csv), ("NDJSON", results_ndjson)):
        seconds, size = timed(partial(written_bytes, writer, rows), args.rounds)
        print(
            f"results as {label}: {seconds:.3f} s = {len(rows) / seconds:,.0f} rows/s, "
            f"{size / MIB:.1f} MiB"
        )
    peak, _ = peak_mib(lambda: deque(results_csv(iter(rows)), maxlen=0))
    print(f"results as CSV, peak while streaming (rows held by the caller aside): {peak:.1f} MiB")
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()

"""A check job of about 300 lines (distinct numbers, repeats, numbers upstream refuses, lines that
are not numbers) runs while its workers are SIGKILLed again and again, the scheduler once, and
Redis is flushed once; each process is restarted at once, as a supervisor would.

The job's submits follow the single checks' rule (service/engine/job_items.py): an item is
marked `submitting` and committed before its upstream call; an item whose worker died while
submitting it is `unknown` once its lease has passed and is never sent again; what is merely
claimed, or queued in Redis, comes due again. Checked from the simulator's own call log (each
submit names its number and the task it made) and through the REST API, as a client sees it:

- no number reached upstream twice; nothing but the job's numbers reached it;
- none lost: every item is final, and each is what upstream's log says of its number: `completed`
  with the very task upstream made for it (or the answer it gave at once), `refused` where
  upstream answered INVALID_ARGUMENT, or `unknown`, and `unknown` only for an item that was
  being submitted when a worker was killed, whose call a live worker logged without an answer
  (a timeout), or that a live worker kept `submitting` for half a lease or more (a worker starved
  of CPU: on the shared 2-core machine at load 10 and more); each counted in the figures; a
  repeated number shows its first line's answer; each kill leaves at most the dead worker's
  cap of marked, unanswered items (MOST_MARKED) `unknown`;
- the counts add up to the job's items, exactly one `job.completed` (with the final counts), one
  event per task and every event delivered; no number kept sealed; no 5xx.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import Counter
from functools import partial
from typing import Any

from service.domain.checks import INSTANT_TASK_PREFIX
from service.domain.phone_numbers import DEFAULT_CHECK_COUNTRIES, PhoneNumber, parse_phone_number
from service.engine.scheduled_submits import MAX_SLOT_WAIT_S
from service.engine.slot_sends import MOST_MARKED
from service.sim.scripts import PHONE_STATUSES
from tests.support.chaos.stack import STACK_SETTINGS, Stack
from tests.support.chaos.tenant import Subscription, Tenant
from tests.support.receivers import flaky_receiver
from tests.support.waiting import wait_until

DISTINCT = 250  # valid numbers, each submitted once
REFUSED = 10  # Bogotá's old 8-digit form: possible, so submitted; upstream refuses it
REPEATS = 30  # later lines repeating an earlier number (never submitted)
NOT_NUMBERS = ("12", "not a number", "+52 55")  # rejected at creation
FLUSHALL = "flushall"
# What happens mid-job, in order, each once its share of the job's items have been submitted:
# four worker SIGKILLs (alternating), a FLUSHALL, one scheduler SIGKILL.
STEPS = ("worker-1", "worker-2", FLUSHALL, "worker-1", "scheduler", "worker-2")
WORKER_KILLS = sum(step.startswith("worker") for step in STEPS)
# What a worker holds marked `submitting` and unanswered, every batch together
# (service/engine/slot_sends.py): the most a single kill can leave `unknown`.
JOB_TIMEOUT_S = 90.0
# A job item's `submitting` lease (service/engine/scheduled_submits.py): the upstream timeout,
# the slot wait and a margin. Once it has passed, the scheduler declares the item unknown.
SUBMIT_LEASE_S = float(STACK_SETTINGS["PHONEBRIDGE_UPSTREAM_TIMEOUT_S"]) + MAX_SLOT_WAIT_S + 2.0
SAMPLE_EVERY_S = 0.25
SUBMITTING_LINES = (
    "SELECT s.job_line FROM scheduled_submits AS s JOIN check_jobs AS j ON j.id = s.job_pk"
    " WHERE j.public_id = %s AND s.state = 'submitting'"
)
EVENT_TYPES = ["task.completed", "task.failed", "task.expired", "job.completed"]


def test_a_job_survives_worker_and_scheduler_kills_and_a_flushall(
    stack: Stack, tenant: Tenant
) -> None:
    lines = job_lines(random.Random(secrets.randbits(32)))
    with flaky_receiver(failure_rate=0.0, seed=23) as receiver:
        subscribe_to_everything(tenant, receiver)
        started = time.time()
        created = tenant.http.post(
            "/v1/check-jobs",
            json={"items": [{"phone_number": text, "reference": f"r{i}"} for i, text in lines]},
        )
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        to_submit = created.json()["counts"]["to_submit"]
        assert to_submit == DISTINCT + REFUSED

        in_flight_at_kills: set[int] = set()
        sampler = SubmittingSampler(stack, job_id)
        sampler.start()
        submits_at_steps, left_at_steps, submitting_at_kills = [], [], []
        for index, step in enumerate(STEPS):
            share = to_submit * (index + 1) // (len(STEPS) + 2)
            submits, left = wait_until(
                partial(progressed, stack, job_id, started, share),
                60,
                f"{share} items submitted before {step}",
                0.05,
            )
            submits_at_steps.append(submits)
            left_at_steps.append(left)
            if step == FLUSHALL:
                stack.flushall()
                continue
            service = stack.service(step)
            service.kill()
            if step == "scheduler":  # it submits nothing itself
                service.start()
                continue
            # What the dead worker had marked `submitting` stays so until its lease passes;
            # read again after the restart, in case its last commit landed as it died.
            in_flight = submitting_lines(stack, job_id)
            service.start()
            in_flight |= submitting_lines(stack, job_id)
            # Rows an earlier kill left `submitting` (until their lease passes) not again.
            submitting_at_kills.append(len(in_flight - in_flight_at_kills))
            in_flight_at_kills |= in_flight
        assert min(left_at_steps) > 0, f"items left to submit at each step: {left_at_steps}"

        try:
            job = wait_until(
                lambda: ended(tenant, job_id), JOB_TIMEOUT_S, "the job to complete", 0.25
            )
        finally:
            sampler.stop()
        job_s = time.time() - started
        events = wait_until(
            lambda: events_if_job_completed(tenant, job_id), 30, "job.completed in the feed"
        )
        calls = stack.sim.control.calls(since=started, endpoint="submit")
        rows = results(tenant, job_id)

        overrun = sampler.submitting_for_a_lease() - in_flight_at_kills
        unanswered = lines_answered_unknown(stack, job_id)
        may_be_unknown = in_flight_at_kills | overrun | unanswered
        states = check_items_against_upstream(lines, rows, calls, may_be_unknown)
        check_counts(job, lines, rows, states)
        check_events(events, job, rows)
        check_store(stack, job_id, unknown=states["unknown"])
        tenant.wait_until_delivered(timeout_s=30)
        tenant.check_deliveries(events, check_attempts=False)
    tenant.check_no_server_errors()

    unknown = states["unknown"]
    print(
        f"unknown items: {unknown} (in flight at the kills: {len(in_flight_at_kills)};"
        f" seen submitting for half a lease or more otherwise: {len(overrun)};"
        f" a call without an answer: {len(unanswered)})"
    )
    assert unknown <= len(may_be_unknown)
    # Each kill costs at most the dead worker's cap; the rest is what live workers' calls left
    # unknown (no answer, or a lease run out under them), each counted.
    assert unknown <= WORKER_KILLS * MOST_MARKED + len(overrun | unanswered)
    # At a kill the job's rows newly `submitting` are the dead worker's, the other worker's and
    # its own restarted process's at most, each under its cap.
    assert max(submitting_at_kills) <= 3 * MOST_MARKED, submitting_at_kills
    tenant.count_upstream()
    tenant.figures.tasks = states["completed"]
    tenant.figures.events = len(events)
    tenant.figures.notes.update(
        {
            "job_items": len(lines),
            "job_distinct_numbers": DISTINCT + REFUSED,
            "job_submits_at_upstream": len(calls),
            "job_items_completed": states["completed"],
            "job_items_refused": states["refused"],
            "job_items_unknown": unknown,
            "job_items_in_flight_at_kills": len(in_flight_at_kills),
            "job_items_submitting_half_a_lease_under_a_live_worker": len(overrun),
            "job_items_whose_call_got_no_answer": len(unanswered),
            "job_seconds_to_complete": round(job_s, 1),
            "sigkills": len(STEPS) - 1,
            "flushalls": 1,
            "submits_at_each_step": submits_at_steps,
            "items_left_to_submit_at_each_step": left_at_steps,
            "newly_submitting_at_each_worker_kill": submitting_at_kills,
        }
    )


# --- the job -------------------------------------------------------------------------------------


def job_lines(rng: random.Random) -> list[tuple[int, str]]:
    """(line, text) of every item: distinct valid numbers, refused numbers, repeats of either and
    lines that are not numbers, shuffled; numbers from a random block, so that no other run's
    submits at the simulator count as this one's."""
    valid_base = rng.randrange(10**7, 9 * 10**7)
    refused_base = rng.randrange(2 * 10**6, 8 * 10**6)
    firsts = [f"+52 55 {valid_base + i:08d}" for i in range(DISTINCT)]
    firsts += [f"+57 1 {refused_base + i:07d}" for i in range(REFUSED)]
    texts = firsts + rng.choices(firsts, k=REPEATS) + list(NOT_NUMBERS)
    rng.shuffle(texts)
    return list(enumerate(texts, start=1))


def digits_of(text: str) -> str | None:
    """The number as phonebridge submits it (None: a line the job rejects)."""
    number = parse_phone_number(text, DEFAULT_CHECK_COUNTRIES)
    return number.digits if isinstance(number, PhoneNumber) else None


def subscribe_to_everything(tenant: Tenant, receiver: Any) -> None:
    response = tenant.http.post(
        "/v1/subscriptions", json={"url": receiver.url("/hook"), "event_types": EVENT_TYPES}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    tenant.subscriptions.append(Subscription(body["id"], body["secret"], receiver))


def progressed(stack: Stack, job_id: str, since: float, share: int) -> tuple[int, int] | None:
    """Once `share` of the job's items have ended their submit (done or unknown), or none is
    left to submit (too late for a step: the caller asserts against it): how many submits the
    simulator has seen, and how many items were still to submit or being submitted."""
    with stack.database() as db:
        row = db.execute(
            "SELECT count(*) FILTER (WHERE s.state IN ('waiting', 'submitting')), count(*)"
            " FROM scheduled_submits AS s JOIN check_jobs AS j ON j.id = s.job_pk"
            " WHERE j.public_id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None
    left, total = int(str(row[0])), int(str(row[1]))
    if total - left < share and left > 0:
        return None
    return int(stack.sim.control.stats(since=since, endpoint="submit")["calls"]), left


def submitting_lines(stack: Stack, job_id: str) -> set[int]:
    with stack.database() as db:
        rows = db.execute(SUBMITTING_LINES, (job_id,)).fetchall()
    return {int(str(row[0])) for row in rows}


class SubmittingSampler:
    """Which of the job's lines are `submitting`, read every SAMPLE_EVERY_S on a thread of its
    own: when each was first and last seen so."""

    def __init__(self, stack: Stack, job_id: str) -> None:
        self._stack = stack
        self._job_id = job_id
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.seen: dict[int, tuple[float, float]] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with self._stack.database() as db:
            while not self._stopped.wait(SAMPLE_EVERY_S):
                now = time.monotonic()
                for (line,) in db.execute(SUBMITTING_LINES, (self._job_id,)).fetchall():
                    first, _ = self.seen.get(int(str(line)), (now, now))
                    self.seen[int(str(line))] = (first, now)

    def submitting_for_a_lease(self) -> set[int]:
        """Lines seen `submitting` for half a lease or more (an item declared unknown without a
        kill stayed so for its whole lease; half of it leaves room for this thread's own lag on
        a loaded machine)."""
        return {
            line for line, (first, last) in self.seen.items() if last - first >= SUBMIT_LEASE_S / 2
        }


def lines_answered_unknown(stack: Stack, job_id: str) -> set[int]:
    """The job's lines whose call a worker logged without an answer it could read (a timeout
    on a loaded machine, say): their outcome is unknown by the rule, no kill needed."""
    with stack.database() as db:
        row = db.execute("SELECT id FROM check_jobs WHERE public_id = %s", (job_id,)).fetchone()
    assert row is not None
    return {
        int(entry["line"])
        for entry in stack.worker_log_entries(frozenset({"job_item.submitted"}))
        if entry.get("job_pk") == row[0] and entry.get("outcome") == "unknown"
    }


def ended(tenant: Tenant, job_id: str) -> dict[str, Any] | None:
    response = tenant.http.get(f"/v1/check-jobs/{job_id}")
    response.raise_for_status()
    job: dict[str, Any] = response.json()
    assert job["state"] not in ("paused", "cancelled"), job
    return job if job["state"] == "completed" else None


def events_if_job_completed(tenant: Tenant, job_id: str) -> list[dict[str, Any]] | None:
    events = tenant.events()
    completed = [e for e in events if e["type"] == "job.completed"]
    return events if any(e["data"]["id"] == job_id for e in completed) else None


def results(tenant: Tenant, job_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        response = tenant.http.get(f"/v1/check-jobs/{job_id}/results", params=params)
        response.raise_for_status()
        page = response.json()
        rows += page["data"]
        if page["next_cursor"] is None:
            return rows
        params["cursor"] = page["next_cursor"]


# --- the checks ----------------------------------------------------------------------------------


def check_items_against_upstream(
    lines: list[tuple[int, str]],
    rows: list[dict[str, Any]],
    calls: list[dict[str, Any]],
    may_be_unknown: set[int],
) -> Counter[str]:
    """Each item against what the simulator received for its number (`may_be_unknown`: the
    lines whose outcome a kill or a lease that ran out may have made unknown); the first
    occurrences' final states, counted."""
    digits = {line: digits_of(text) for line, text in lines}
    first_line: dict[str, int] = {}
    for line, number in digits.items():
        if number is not None:
            first_line.setdefault(number, line)
    refused_numbers = {digits_of(text) for _, text in lines if text.startswith("+57")}

    per_number: dict[str | None, list[dict[str, Any]]] = {}
    for call in calls:
        per_number.setdefault(call["phone_number"], []).append(call)
    twice = {number: len(c) for number, c in per_number.items() if len(c) > 1}
    assert not twice, f"{len(twice)} numbers submitted more than once: {list(twice.items())[:5]}"
    assert set(per_number) <= set(first_line), "a submit of a number not in the job"

    assert [row["line"] for row in rows] == [line for line, n in digits.items() if n is not None]
    by_line = {row["line"]: row for row in rows}
    states: Counter[str] = Counter()
    wrong: list[str] = []
    for row in rows:
        line, number = row["line"], digits[row["line"]]
        assert number is not None
        first = by_line[first_line[number]]
        if first is not row:
            shown = ("state", "task_id", "phone_status")
            if any(row[key] != first[key] for key in shown):
                wrong.append(f"line {line}: {row} differs from its first line {first}")
            continue
        states[row["state"]] += 1
        received = per_number.get(number, [])
        answers = [call["answer"] for call in received]
        if row["state"] == "completed":
            made = received[0]["answered_task_id"] if received else None
            if answers != ["OK"] or number in refused_numbers:
                wrong.append(f"line {line}: completed, upstream answered {answers}")
            elif row["task_id"] != (made or row["task_id"]) or (
                made is None and not row["task_id"].startswith(INSTANT_TASK_PREFIX)
            ):
                wrong.append(f"line {line}: task {row['task_id']}, upstream made {made}")
            elif row["phone_status"] not in PHONE_STATUSES:
                wrong.append(f"line {line}: phone_status {row['phone_status']}")
        elif row["state"] == "refused":
            if answers != ["INVALID_ARGUMENT"] or number not in refused_numbers:
                wrong.append(f"line {line}: refused, upstream answered {answers}")
        elif row["state"] == "unknown":
            if line not in may_be_unknown:
                wrong.append(f"line {line}: unknown, but neither in flight at a kill nor late")
        else:
            wrong.append(f"line {line}: {row['state']}, upstream received {answers}")
    assert not wrong, f"{len(wrong)} items wrong, e.g. {wrong[:5]}"
    return states


def check_counts(
    job: dict[str, Any],
    lines: list[tuple[int, str]],
    rows: list[dict[str, Any]],
    states: Counter[str],
) -> None:
    counts = job["counts"]
    accepted = len(lines) - len(NOT_NUMBERS)
    assert (counts["items"], counts["rejected"], counts["cached"]) == (
        len(lines),
        len(NOT_NUMBERS),
        0,
    )
    assert counts["duplicates"] == accepted - DISTINCT - REFUSED
    assert counts["to_submit"] == DISTINCT + REFUSED == sum(states.values())
    assert counts["submitted"] == counts["completed"] == states["completed"]
    assert (counts["pending"], counts["failed"], counts["expired"]) == (0, 0, 0)
    # Every item is accounted for: rejected, repeated, or one of the submitted's final states.
    assert (
        counts["items"]
        == (counts["rejected"] + counts["duplicates"] + counts["completed"])
        + states["refused"]
        + states["unknown"]
    )
    answered_rows = sum(row["phone_status"] is not None for row in rows)
    assert sum(counts["by_verdict"].values()) == answered_rows


def check_events(
    events: list[dict[str, Any]], job: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    (completed,) = [event for event in events if event["type"] == "job.completed"]
    assert completed["data"]["id"] == job["id"]
    assert completed["data"]["counts"] == job["counts"]
    tasks = {row["task_id"] for row in rows if row["state"] == "completed"}
    per_task = Counter(
        event["data"]["task_id"] for event in events if event["type"] != "job.completed"
    )
    assert {event["type"] for event in events} == {"task.completed", "job.completed"}
    assert per_task == Counter(tasks), "one task.completed per task, none other"


def check_store(stack: Stack, job_id: str, *, unknown: int) -> None:
    """Behind the API: every submit of the job ended (`done`, or `unknown` as many as the
    items), and no number is kept sealed."""
    with stack.database() as db:
        by_state = {
            str(state): int(str(count))
            for state, count in db.execute(
                "SELECT s.state, count(*) FROM scheduled_submits AS s"
                " JOIN check_jobs AS j ON j.id = s.job_pk WHERE j.public_id = %s"
                " GROUP BY s.state",
                (job_id,),
            ).fetchall()
        }
        sealed = db.execute(
            "SELECT count(*) FROM scheduled_submits AS s JOIN check_jobs AS j ON j.id = s.job_pk"
            " WHERE j.public_id = %s AND s.phone_number_sealed IS NOT NULL",
            (job_id,),
        ).fetchone()
    assert by_state == {"done": DISTINCT + REFUSED - unknown} | (
        {"unknown": unknown} if unknown else {}
    ), by_state
    assert sealed == (0,)

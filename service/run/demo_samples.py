"""The demo's samples: one check per phone_status, each a made-up Mexican or Colombian number
written as people write them, two registered task_ids (one never answers, one upstream rejects),
and a small check job (numbers answered after 1 to 6 s, a duplicate, a line that is no number),
with what each ends as. `phonebridge demo` (service/run/demo.py) scripts the simulator to
these."""

from __future__ import annotations

from service.domain.answers import PhoneStatus
from service.domain.phone_numbers import DEFAULT_CHECK_COUNTRIES, PhoneNumber, parse_phone_number
from service.domain.states import TaskState
from service.domain.verdicts import verdict_of
from service.run.view import SampleTask

# (phone_status, seconds until upstream has the answer): every status, at different speeds.
SAMPLE_STATUSES: tuple[tuple[PhoneStatus, float], ...] = (
    (PhoneStatus.RING, 0.0),
    (PhoneStatus.CONNECTED, 1.0),
    (PhoneStatus.EMPTY, 2.0),
    (PhoneStatus.BUSY, 1.5),
    (PhoneStatus.TURNED_OFF, 3.0),
    (PhoneStatus.OUTSIDE_SERVICE_AREA, 4.0),
    (PhoneStatus.LINE_ABNORMAL, 2.5),
    (PhoneStatus.TEMP_UNAVAILABLE, 3.5),
)
# Made-up Mexican and Colombian numbers, one per sample check, written as people and CRMs write
# them (phonebridge normalises each); the simulator never calls anyone.
SAMPLE_NUMBERS: tuple[str, ...] = (
    "+52 1 55 1234 5678",
    "+57 300 123 4567",
    "+52 (33) 1234-5678",
    "+57 601 234 5678",
    "52 81 1234 5678",
    "57 310 555 1234",
    "+52.664.123.4567",
    "573205551234",
)
# The sample job: made-up Mexican numbers (the simulator never calls anyone), each answered with
# the n-th phone_status after 1 to 6 s; then line 1's number again, written otherwise (a
# duplicate: checked once, answered twice) and a line that is no phone number (rejected).
SAMPLE_JOB_NUMBERS = 18
SAMPLE_JOB_DUPLICATE = "52 55 5000 0101"
SAMPLE_JOB_REJECTED = "555-CALL-NOW"


def sample_tasks(tag: str) -> list[SampleTask]:
    """The demo's registered tasks; `tag` makes the ids unique to this run (data survives
    restarts)."""
    # The 0 PENDING answers are spelled out: a tag of digits alone (token_hex gives one about 6%
    # of the time) would otherwise be read as the count, and sim-invalid would answer PENDING.
    return [
        SampleTask(f"sim-never-0-{tag}", TaskState.EXPIRED),
        SampleTask(f"sim-invalid-0-{tag}", TaskState.FAILED),
    ]


def sample_checks() -> list[tuple[str, str, PhoneStatus, float]]:
    """Each sample check: its number as written, as upstream is sent it (what the simulator's
    script for it is keyed by), the phone_status it ends with and when that is ready."""
    checks = []
    for written, (status, ready_after_s) in zip(SAMPLE_NUMBERS, SAMPLE_STATUSES, strict=True):
        number = parse_phone_number(written, DEFAULT_CHECK_COUNTRIES)
        assert isinstance(number, PhoneNumber), written
        checks.append((written, number.digits, status, ready_after_s))
    return checks


def sample_job_lines() -> list[tuple[str, str, PhoneStatus | None, float]]:
    """The sample job's lines in order: the number as written, its reference, the phone_status
    the simulator answers it with (None: a duplicate or a rejected line, never submitted) and
    when that answer is ready."""
    statuses = [status for status, _ in SAMPLE_STATUSES]
    lines: list[tuple[str, str, PhoneStatus | None, float]] = [
        (
            f"+52 55 5000 {n:02d}{n:02d}",
            f"demo-{n:02d}",
            statuses[(n - 1) % len(statuses)],
            1.0 + (n * 7 % 11) / 2,
        )
        for n in range(1, SAMPLE_JOB_NUMBERS + 1)
    ]
    lines.append((SAMPLE_JOB_DUPLICATE, "demo-again-01", None, 0.0))
    lines.append((SAMPLE_JOB_REJECTED, "demo-not-a-number", None, 0.0))
    return lines


def expected_job_verdicts() -> dict[str, int]:
    """The sample job's result rows by verdict once it is over: one per scripted number, and
    the duplicate with its first line's."""
    counts: dict[str, int] = {}
    lines = sample_job_lines()
    answered = [status for _, _, status, _ in lines if status is not None] + [lines[0][2]]
    for status in answered:
        assert status is not None
        verdict = verdict_of(status)
        assert verdict is not None, status
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts

"""The simulator's answers, byte for byte: AccuAuth's JSON shapes and the misbehaviours."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import orjson

from service.sim.faults import FaultMode

JSON = b"application/json"
HTML = b"text/html; charset=utf-8"

PENDING_REASON = "check in progress"
TASK_NOT_FOUND_REASON = "argument 'task_id': not found"
TASK_ID_MISSING_REASON = "argument 'task_id': missing"

# A status no document mentions; clients must treat it as unknown, not crash on it.
UNKNOWN_STATUS = "QUEUED_FOR_REVIEW"

GARBAGE_BODY = b'\x00\xff<<garbled>> {"status": "OK", "result": {"phone_'
HTML_BODY = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@dataclass(frozen=True, slots=True)
class Answer:
    http_status: int
    body: bytes
    label: str  # what the call log records: the JSON status, or the fault mode's name
    content_type: bytes = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()
    delay_s: float = 0.0  # wait this long before answering (the "slow" fault)
    reset: bool = False  # close the connection instead of answering
    task_id: str | None = None  # the task a submit made (the call log records it)


def new_request_id() -> str:
    """``TID`` and 32 hex digits, unique per call like upstream's."""
    return "TID" + os.urandom(16).hex()


def json_answer(http_status: int, status: str, reason: str | None = None, **extra: Any) -> Answer:
    body: dict[str, Any] = {"status": status}
    if reason is not None:
        body["reason"] = reason
    body.update(extra)
    body["request_id"] = new_request_id()
    return Answer(http_status, orjson.dumps(body), label=status)


def pending() -> Answer:
    return json_answer(400, "PENDING", PENDING_REASON)


def finished(masked_phone_number: str, phone_status: str) -> Answer:
    result = {"phone_number": masked_phone_number, "phone_status": phone_status}
    return json_answer(200, "OK", result=result)


def submitted(task_id: str) -> Answer:
    answer = json_answer(200, "OK", task_id=task_id)
    return dataclasses.replace(answer, task_id=task_id)


def invalid_argument(reason: str) -> Answer:
    return json_answer(400, "INVALID_ARGUMENT", reason)


def path_not_found() -> Answer:
    return json_answer(404, "NOT_FOUND", "api not found")


def fault(mode: FaultMode, retry_after_s: int | None = None) -> Answer:
    """The answer a fault mode stands for; SLOW is not an answer of its own (see `slowed`)."""
    if mode is FaultMode.INTERNAL_ERROR:
        return json_answer(500, "INTERNAL_ERROR", "internal error")
    if mode is FaultMode.GARBAGE:
        return Answer(200, GARBAGE_BODY, label=mode.value)
    if mode is FaultMode.HTML:
        return Answer(502, HTML_BODY, label=mode.value, content_type=HTML)
    if mode is FaultMode.EMPTY:
        return Answer(200, b"", label=mode.value)
    if mode is FaultMode.PENDING_200:
        answer = json_answer(200, "PENDING", PENDING_REASON)
        return Answer(answer.http_status, answer.body, label=mode.value)
    if mode is FaultMode.UNKNOWN_STATUS:
        return json_answer(200, UNKNOWN_STATUS, "new behaviour")
    if mode is FaultMode.RATE_LIMIT:
        answer = json_answer(403, "RATE_LIMIT_EXCEEDED", "too many requests")
        if retry_after_s is None:
            return answer
        header = (b"retry-after", str(retry_after_s).encode())
        return Answer(answer.http_status, answer.body, answer.label, headers=(header,))
    if mode is FaultMode.RESET:
        return Answer(0, b"", label=mode.value, reset=True)
    if mode is FaultMode.UNAUTHORIZED:
        return json_answer(401, "UNAUTHORIZED", "access denied")
    if mode is FaultMode.KEY_EXPIRED:
        return json_answer(401, "KEY_EXPIRED", "api id expired")
    if mode is FaultMode.NO_PERMISSION:
        return json_answer(403, "NO_PERMISSION", "no permission to use this api")
    if mode is FaultMode.OUT_OF_QUOTA:
        return json_answer(403, "OUT_OF_QUOTA", "call quota exhausted")
    if mode is FaultMode.NOT_FOUND:
        return path_not_found()
    raise ValueError(f"{mode.value} is not an answer of its own")


def slowed(answer: Answer, delay_s: float) -> Answer:
    return Answer(
        answer.http_status,
        answer.body,
        label=f"slow:{answer.label}",
        content_type=answer.content_type,
        headers=answer.headers,
        delay_s=delay_s,
        reset=answer.reset,
        task_id=answer.task_id,
    )

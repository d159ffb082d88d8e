"""The simulator's memory and decisions: registered tasks, the call log (`calls.py`), and what each
call gets.

Everything here runs on the server's event loop thread and does no I/O; the HTTP layer
(`service.sim.app`) only parses headers and sends the `Answer` it is given.
"""

from __future__ import annotations

import hmac
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from service.sim import answers
from service.sim.answers import Answer
from service.sim.callbacks import (
    CallbackLog,
    CallbackSettings,
    PlannedCallback,
    plan_callbacks,
)
from service.sim.calls import CallLog, Endpoint, busiest_window
from service.sim.defaults import DEFAULT_API_ID, DEFAULT_API_SECRET, DEFAULT_TASK_TTL_S
from service.sim.faults import (
    FaultMode,
    FaultSettings,
    SlidingWindowLimit,
    draw_random_fault,
    take_forced_fault,
)
from service.sim.numbers import (
    INVALID_NUMBER_REASON,
    NumberScripts,
    is_valid_number,
    number_digits,
    plausible_phone_number,
)
from service.sim.scripts import (
    FateKind,
    TaskScript,
    mask_phone_number,
    random_script,
    script_for_task_id,
)

_MAX_TASK_ID_LENGTH = 256


@dataclass(slots=True)
class SimOptions:
    api_id: str = field(default=DEFAULT_API_ID, repr=False)
    api_secret: str = field(default=DEFAULT_API_SECRET, repr=False)
    task_ttl_s: float = DEFAULT_TASK_TTL_S
    seed: int | None = None
    submit_script: TaskScript | None = None  # None: a random plausible script per check
    # Numbers that answer differently on successive submits (service/sim/numbers.py).
    number_scripts: dict[str, tuple[TaskScript, ...]] = field(default_factory=dict)
    faults: FaultSettings = field(default_factory=FaultSettings)


@dataclass(slots=True)
class SimTask:
    task_id: str
    script: TaskScript
    phone_number: str | None  # None: made up from the task_id when first needed
    submitted_at: float
    expires_at: float
    registered_at: float
    calls: int = 0  # the call times and answers themselves are in the call log
    pending_answers: int = 0  # script progress: PENDING answers given so far
    final_at: float | None = None  # first OK or INVALID_ARGUMENT answer
    calls_after_final: int = 0
    calls_after_expiry: int = 0

    def record_call(self, now: float, after_final: bool) -> None:
        if after_final:
            self.calls_after_final += 1
        if now >= self.expires_at:
            self.calls_after_expiry += 1
        self.calls += 1

    def view(self, call_times: list[float], answers: list[str]) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "script": self.script.text,
            "fate": self.script.fate.token,
            "pending_calls": self.script.pending_calls,
            "pending_s": self.script.pending_s,
            "phone_number": self.phone_number or plausible_phone_number(self.task_id),
            "submitted_at": self.submitted_at,
            "registered_at": self.registered_at,
            "expires_at": self.expires_at,
            "calls": self.calls,
            "call_times": call_times,
            "answers": answers,
            "pending_answers": self.pending_answers,
            "final_at": self.final_at,
            "calls_after_final": self.calls_after_final,
            "calls_after_expiry": self.calls_after_expiry,
        }


class SimState:
    """Tasks, faults and the call log of one simulator; every method runs on its event loop."""

    def __init__(self, options: SimOptions, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.clock = clock
        self.rng = random.Random(options.seed)
        self._api_id = options.api_id.encode()
        self._api_secret = options.api_secret.encode()
        self.tasks: dict[str, SimTask] = {}
        # Millions of tasks share a handful of scripts; one object per distinct script.
        self._scripts: dict[TaskScript, TaskScript] = {}
        self.log = CallLog()
        self.faults = options.faults.copy()
        self._rate_limit: SlidingWindowLimit | None = None
        self.set_faults(self.faults)
        # Changeable at run time through the control API; `reset` restores the options' values.
        self.task_ttl_s = options.task_ttl_s
        self.submit_script = options.submit_script
        self.numbers = NumberScripts.starting_with(options.number_scripts)
        self.callback_settings = CallbackSettings()
        self.callback_log = CallbackLog()
        # Callbacks planned by submits and not yet handed to the sender (service.sim.app).
        self._planned: list[PlannedCallback] = []

    # --- control ---------------------------------------------------------------------------
    def set_faults(self, faults: FaultSettings) -> None:
        self.faults = faults
        rps = faults.rate_limit_rps
        if rps is None:
            self._rate_limit = None
        elif self._rate_limit is None or self._rate_limit.limit != rps:
            self._rate_limit = SlidingWindowLimit(rps)

    def reset(self) -> None:
        """Forget every task and call; settings and randomness go back to their start values."""
        self.tasks.clear()
        self.log = CallLog()
        self.rng = random.Random(self.options.seed)
        self._rate_limit = None
        self.set_faults(self.options.faults.copy())
        self.task_ttl_s = self.options.task_ttl_s
        self.submit_script = self.options.submit_script
        self.numbers = NumberScripts.starting_with(self.options.number_scripts)
        self.callback_settings = CallbackSettings()
        self.callback_log = CallbackLog()
        self._planned = []

    def take_planned_callbacks(self) -> list[PlannedCallback]:
        """The callbacks planned since the last call, for the sender to schedule."""
        planned, self._planned = self._planned, []
        return planned

    def register(
        self,
        task_id: str,
        script: TaskScript,
        phone_number: str | None = None,
        submitted_at: float | None = None,
        ttl_s: float | None = None,
    ) -> SimTask:
        """Add (or replace) a task with a script; times are wall-clock seconds."""
        now = self.clock()
        submitted = now if submitted_at is None else submitted_at
        ttl = self.task_ttl_s if ttl_s is None else ttl_s
        task = SimTask(
            task_id=task_id,
            script=self._scripts.setdefault(script, script),
            phone_number=phone_number,
            submitted_at=submitted,
            expires_at=submitted + ttl,
            # A task registered by its first call was registered when that call arrived.
            registered_at=min(now, submitted),
        )
        self.tasks[task_id] = task
        return task

    # --- upstream calls --------------------------------------------------------------------
    def answer_call(
        self, endpoint: Endpoint, api_id: bytes | None, api_secret: bytes | None, body: bytes
    ) -> Answer:
        """Decide the answer to one upstream call and record it."""
        now = self.clock()
        request = _json_object(body)
        task_id = request.get("task_id") if endpoint is Endpoint.TASK_RESULT else None
        if not isinstance(task_id, str) or len(task_id) > _MAX_TASK_ID_LENGTH:
            task_id = None
        task = self._find_task(task_id, now) if task_id is not None else None
        after_final = task is not None and task.final_at is not None

        mode = self._fault_for(api_id, api_secret, now)
        if mode is None or mode is FaultMode.SLOW:
            if endpoint is Endpoint.SUBMIT:
                answer = self._submit(request, now)
            else:
                answer = self._task_result(task, task_id, now)
            if mode is FaultMode.SLOW:
                answer = answers.slowed(answer, self.faults.slow_s)
        else:
            answer = answers.fault(mode, self.faults.retry_after_s)

        # The task's own id string, not this request's copy: the log keeps one per call.
        logged_id = task.task_id if task is not None else task_id
        given = request.get("phone_number") if endpoint is Endpoint.SUBMIT else None
        self.log.record(
            now,
            endpoint,
            logged_id,
            answer.label,
            phone_number=number_digits(given) if isinstance(given, str) else None,
            answered_task_id=answer.task_id,
        )
        if task is not None:
            task.record_call(now, after_final)
        return answer

    def _find_task(self, task_id: str, now: float) -> SimTask | None:
        task = self.tasks.get(task_id)
        if task is None and (script := script_for_task_id(task_id)) is not None:
            task = self.register(task_id, script, submitted_at=now)
        return task

    def _fault_for(
        self, api_id: bytes | None, api_secret: bytes | None, now: float
    ) -> FaultMode | None:
        if not self._credentials_match(api_id, api_secret):
            return FaultMode.UNAUTHORIZED
        forced = take_forced_fault(self.faults, now)
        if forced is not None:
            return forced
        if self._rate_limit is not None and not self._rate_limit.admit(now):
            return FaultMode.RATE_LIMIT
        return draw_random_fault(self.faults, self.rng.random)

    def _credentials_match(self, api_id: bytes | None, api_secret: bytes | None) -> bool:
        if api_id is None or api_secret is None:
            return False
        # Both comparisons always run, so timing does not tell which credential was wrong.
        id_ok = hmac.compare_digest(api_id, self._api_id)
        secret_ok = hmac.compare_digest(api_secret, self._api_secret)
        return id_ok and secret_ok

    def _task_result(self, task: SimTask | None, task_id: str | None, now: float) -> Answer:
        if task_id is None:
            return answers.invalid_argument(answers.TASK_ID_MISSING_REASON)
        if task is None:
            return answers.invalid_argument(answers.TASK_NOT_FOUND_REASON)
        if now >= task.expires_at:
            return answers.invalid_argument(answers.TASK_NOT_FOUND_REASON)

        script = task.script
        still_running = (
            task.pending_answers < script.pending_calls
            or now < task.submitted_at + script.pending_s
        )
        fate = script.fate
        if still_running or fate.kind is FateKind.NEVER:
            task.pending_answers += 1
            return answers.pending()
        if fate.kind is FateKind.FAULT:
            assert fate.fault is not None
            if fate.fault is FaultMode.SLOW:
                return answers.slowed(answers.pending(), self.faults.slow_s)
            return answers.fault(fate.fault, self.faults.retry_after_s)
        if task.final_at is None:
            task.final_at = now
        if fate.kind is FateKind.INVALID:
            return answers.invalid_argument(answers.TASK_NOT_FOUND_REASON)
        assert fate.phone_status is not None
        phone_number = task.phone_number or plausible_phone_number(task.task_id)
        return answers.finished(mask_phone_number(phone_number), fate.phone_status)

    def _submit(self, request: dict[str, Any], now: float) -> Answer:
        given = request.get("phone_number")
        phone_number = number_digits(given) if isinstance(given, str) else None
        if phone_number is None:
            return answers.invalid_argument(INVALID_NUMBER_REASON)
        callback = request.get("callback")
        if callback is not None and not isinstance(callback, str):
            return answers.invalid_argument("argument 'callback': invalid")
        if not is_valid_number(phone_number):
            return answers.invalid_argument(INVALID_NUMBER_REASON)
        script = self.numbers.take(phone_number) or self.submit_script or random_script(self.rng)
        fate = script.fate
        if fate.kind is FateKind.STATUS and not script.pending_calls and not script.pending_s:
            assert fate.phone_status is not None
            return answers.finished(mask_phone_number(phone_number), fate.phone_status)
        # The id carries the script, so the task still resolves after a simulator restart.
        task_id = f"sim-{script.text}-{self.rng.getrandbits(64):016x}"
        self.register(task_id, script, phone_number=phone_number, submitted_at=now)
        # The callback fires when the script's delay has passed: a script that counts PENDING
        # answers instead is "ready" for it at once (its callback comes early, a premature hint).
        if (
            callback is not None
            and callback.startswith(("http://", "https://"))
            and fate.kind is FateKind.STATUS
        ):
            assert fate.phone_status is not None
            planned = plan_callbacks(
                self.callback_settings,
                self.rng.random,
                task_id=task_id,
                url=callback,
                ready_at=now + script.pending_s,
                now=now,
                params={
                    "request_id": f"TID{self.rng.getrandbits(128):032x}",
                    "phone_number": mask_phone_number(phone_number),
                    "phone_status": fate.phone_status,
                    "task_id": task_id,
                },
            )
            self.callback_log.add(planned)
            self._planned.extend(planned)
        return answers.submitted(task_id)

    # --- reading the log -------------------------------------------------------------------
    def task_view(self, task_id: str) -> dict[str, Any] | None:
        task = self.tasks.get(task_id)
        if task is None:
            return None
        log = self.log
        selected = log.select(since=task.registered_at, task_id=task_id)
        return task.view([log.at[i] for i in selected], [log.labels[i] for i in selected])

    def calls(
        self,
        since: float | None = None,
        until: float | None = None,
        endpoint: Endpoint | None = None,
        task_id: str | None = None,
    ) -> list[dict[str, Any]]:
        log = self.log
        return [
            {
                "at": log.at[i],
                "endpoint": log.endpoints[i].value,
                "task_id": log.task_ids[i],
                "answer": log.labels[i],
                "phone_number": log.phone_numbers[i],
                "answered_task_id": log.answered_task_ids[i],
            }
            for i in log.select(since, until, endpoint, task_id)
        ]

    def stats(
        self,
        window_s: float = 1.0,
        since: float | None = None,
        until: float | None = None,
        endpoint: Endpoint | None = None,
    ) -> dict[str, Any]:
        """Totals over the selected calls, and the busiest sliding window among them."""
        log = self.log
        selected = log.select(since, until, endpoint)
        times = [log.at[i] for i in selected]
        busiest, busiest_start = busiest_window(times, window_s)
        tasks = self.tasks.values()
        return {
            "calls": len(selected),
            "answers": dict(Counter(log.labels[i] for i in selected)),
            "first_call_at": times[0] if times else None,
            "last_call_at": times[-1] if times else None,
            "window_s": window_s,
            "max_calls_in_window": busiest,
            "busiest_window_start": busiest_start,
            "tasks": len(self.tasks),
            "tasks_called": sum(1 for task in tasks if task.calls),
            "tasks_finished": sum(1 for task in tasks if task.final_at is not None),
            "calls_after_final": sum(task.calls_after_final for task in tasks),
            "calls_after_expiry": sum(task.calls_after_expiry for task in tasks),
        }


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}

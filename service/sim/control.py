"""The simulator's control API under /_sim/ (JSON, no credentials: it is a test fixture).

    GET   /_sim/health                       {"status": "ok"}
    POST  /_sim/tasks                        register a task (or {"tasks": [...]}), 201
    GET   /_sim/tasks/{task_id}              its script, call count, call times and answers
    GET   /_sim/calls?since&until&endpoint&task_id     the call log, oldest first (a submit's
                                             entry names its number and the task it made)
    GET   /_sim/stats?window_s&since&until&endpoint    totals and the busiest sliding window
    GET   /_sim/faults                       the fault settings in force
    PUT   /_sim/faults                       replace them (missing fields: no fault)
    PATCH /_sim/faults                       change only the given fields (null switches off)
    GET   /_sim/config                       submit_script, task_ttl_s, seed
    PATCH /_sim/config                       change submit_script ("random" or e.g. "ring-2")
                                             and task_ttl_s (for tasks registered later)
    GET   /_sim/numbers                      the scripted numbers, each with its submits
    PUT   /_sim/numbers/{number}             {"scripts": ["temp_unavailable", "ring-2"]}: the
                                             number's n-th submit from now takes the n-th
                                             script, later ones the last ([] unscripts it)
    GET   /_sim/numbers/{number}             its scripts and how many submits it had
    GET   /_sim/callbacks                    the callback faults: lose, delay_s, duplicate, forge
    PUT   /_sim/callbacks                    replace them (missing fields: 0)
    GET   /_sim/callbacks/log                the newest 20,000 callbacks planned: task_id, kind
                                             (callback, duplicate, forged, lost), at, sent_at,
                                             status; how many were planned in all, by kind, and
                                             how many the log no longer holds (`dropped`)
    POST  /_sim/reset                        forget tasks and calls, restore the start settings

Times are wall-clock seconds since the epoch (floats), as `time.time()` gives them.
"""

from __future__ import annotations

import secrets
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.sim.callbacks import CallbackSettings
from service.sim.calls import Endpoint
from service.sim.faults import FaultMode, FaultSettings, ForcedFault, check_probabilities
from service.sim.numbers import number_digits, parse_number_scripts
from service.sim.scripts import (
    RANDOM_SCRIPT,
    TaskScript,
    parse_fate,
    parse_script,
    script_for_task_id,
)
from service.sim.state import SimState, SimTask


class ForceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: FaultMode
    for_s: float | None = Field(default=None, gt=0)
    calls: int | None = Field(default=None, ge=1)


class FaultsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    probabilities: dict[FaultMode, float] | None = None
    slow_s: float | None = Field(default=None, ge=0)
    rate_limit_rps: float | None = Field(default=None, gt=0)
    retry_after_s: int | None = Field(default=None, ge=0)
    force: ForceIn | None = None


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: str | None = Field(default=None, min_length=1, max_length=256)
    script: str | None = None  # the task_id grammar without "sim-", e.g. "ring-3-2s"
    fate: str | None = None  # or the parts: a fate token ...
    pending_calls: int = Field(default=0, ge=0)  # ... PENDING answers before it ...
    pending_s: float = Field(default=0.0, ge=0)  # ... and seconds after submission before it
    phone_number: str | None = Field(default=None, min_length=1, max_length=32)
    submitted_at: float | None = None
    ttl_s: float | None = Field(default=None, gt=0)


class CallbacksIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lose: float = Field(default=0.0, ge=0, le=1)
    delay_s: float = Field(default=0.0, ge=0)
    duplicate: float = Field(default=0.0, ge=0, le=1)
    forge: float = Field(default=0.0, ge=0, le=1)


class ConfigIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    submit_script: str | None = None  # "random", or the task_id grammar without "sim-"
    task_ttl_s: float | None = Field(default=None, gt=0)  # for tasks registered from now on


class NumberScriptsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The task_id grammar without "sim-", one per submit; the last repeats.
    scripts: list[str] = Field(max_length=100)


class ControlError(Exception):
    """A control request that cannot be carried out; the message says why."""


def faults_view(faults: FaultSettings) -> dict[str, Any]:
    forced = faults.forced
    return {
        "probabilities": {mode.value: p for mode, p in faults.probabilities.items()},
        "slow_s": faults.slow_s,
        "rate_limit_rps": faults.rate_limit_rps,
        "retry_after_s": faults.retry_after_s,
        "force": None
        if forced is None
        else {"mode": forced.mode.value, "until": forced.until, "calls_left": forced.calls_left},
    }


def apply_faults(
    current: FaultSettings, change: FaultsIn, now: float, replace: bool
) -> FaultSettings:
    """The fault settings after a PUT (`replace`) or PATCH; raises ControlError when invalid."""
    given = change.model_fields_set
    updated = FaultSettings() if replace else current.copy()
    if change.probabilities is not None:
        if replace:
            updated.probabilities = {}
        updated.probabilities.update(change.probabilities)
        updated.probabilities = {m: p for m, p in updated.probabilities.items() if p > 0}
    elif "probabilities" in given:
        updated.probabilities = {}
    if change.slow_s is not None:
        updated.slow_s = change.slow_s
    if "rate_limit_rps" in given:
        updated.rate_limit_rps = change.rate_limit_rps
    if "retry_after_s" in given:
        updated.retry_after_s = change.retry_after_s
    if "force" in given:
        force = change.force
        updated.forced = (
            None
            if force is None
            else ForcedFault(
                mode=force.mode,
                until=None if force.for_s is None else now + force.for_s,
                calls_left=force.calls,
            )
        )
    try:
        check_probabilities(updated.probabilities)
    except ValueError as error:
        raise ControlError(str(error)) from None
    return updated


def config_view(state: SimState) -> dict[str, Any]:
    script = state.submit_script
    return {
        "submit_script": RANDOM_SCRIPT if script is None else script.text,
        "task_ttl_s": state.task_ttl_s,
        "seed": state.options.seed,
    }


def apply_config(state: SimState, change: ConfigIn) -> None:
    if change.submit_script is not None:
        if change.submit_script == RANDOM_SCRIPT:
            state.submit_script = None
        elif (script := parse_script(change.submit_script)) is not None:
            state.submit_script = script
        else:
            raise ControlError(f"unknown script {change.submit_script!r}")
    if change.task_ttl_s is not None:
        state.task_ttl_s = change.task_ttl_s


def script_number(state: SimState, number: str, change: NumberScriptsIn) -> dict[str, Any]:
    """Script a number's next submits (PUT /_sim/numbers/{number}); its view after."""
    digits = _digits_of(number)
    scripts = parse_number_scripts(change.scripts) if change.scripts else ()
    if scripts is None:
        raise ControlError(f"unknown script among {change.scripts!r}")
    state.numbers.script(digits, scripts)
    return state.numbers.view(digits)


def _digits_of(number: str) -> str:
    digits = number_digits(number)
    if digits is None:
        raise ControlError("a number is 6-20 digits after an optional '+'")
    return digits


def script_of(task: TaskIn) -> TaskScript:
    if task.script is not None:
        script = parse_script(task.script)
        if script is None:
            raise ControlError(f"unknown script {task.script!r}")
        return script
    if task.fate is not None:
        fate = parse_fate(task.fate)
        if fate is None:
            raise ControlError(f"unknown fate {task.fate!r}")
        return TaskScript(fate, pending_calls=task.pending_calls, pending_s=task.pending_s)
    if task.task_id is not None and (script := script_for_task_id(task.task_id)) is not None:
        return script
    raise ControlError("give a script, a fate, or a task_id in the sim- grammar")


def register_task(state: SimState, task: TaskIn) -> SimTask:
    script = script_of(task)
    task_id = task.task_id or f"sim-{script.text}-{secrets.token_hex(8)}"
    return state.register(task_id, script, task.phone_number, task.submitted_at, task.ttl_s)


def create_control_app(state: SimState) -> Starlette:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def post_tasks(request: Request) -> Response:
        body = await _json_body(request)
        if isinstance(body, dict) and isinstance(body.get("tasks"), list):
            items = [TaskIn.model_validate(item) for item in body["tasks"]]
            views = [_registered_view(state, register_task(state, item)) for item in items]
            return JSONResponse({"tasks": views}, status_code=201)
        task = register_task(state, TaskIn.model_validate(body))
        return JSONResponse(_registered_view(state, task), status_code=201)

    async def get_task(request: Request) -> Response:
        view = state.task_view(request.path_params["task_id"])
        if view is None:
            return JSONResponse({"detail": "no such task"}, status_code=404)
        return JSONResponse(view)

    async def get_calls(request: Request) -> Response:
        query = request.query_params
        calls = state.calls(
            since=_float(query.get("since")),
            until=_float(query.get("until")),
            endpoint=_endpoint(query.get("endpoint")),
            task_id=query.get("task_id"),
        )
        return JSONResponse({"calls": calls})

    async def get_stats(request: Request) -> Response:
        query = request.query_params
        window_s = _float(query.get("window_s")) or 1.0
        stats = state.stats(
            window_s=window_s,
            since=_float(query.get("since")),
            until=_float(query.get("until")),
            endpoint=_endpoint(query.get("endpoint")),
        )
        return JSONResponse(stats)

    async def get_faults(request: Request) -> Response:
        return JSONResponse(faults_view(state.faults))

    async def change_faults(request: Request) -> Response:
        change = FaultsIn.model_validate(await _json_body(request))
        replace = request.method == "PUT"
        state.set_faults(apply_faults(state.faults, change, state.clock(), replace))
        return JSONResponse(faults_view(state.faults))

    async def get_config(request: Request) -> Response:
        return JSONResponse(config_view(state))

    async def change_config(request: Request) -> Response:
        apply_config(state, ConfigIn.model_validate(await _json_body(request)))
        return JSONResponse(config_view(state))

    async def get_numbers(request: Request) -> Response:
        return JSONResponse({"numbers": state.numbers.views()})

    async def get_number(request: Request) -> Response:
        return JSONResponse(state.numbers.view(_digits_of(request.path_params["number"])))

    async def put_number(request: Request) -> Response:
        change = NumberScriptsIn.model_validate(await _json_body(request))
        return JSONResponse(script_number(state, request.path_params["number"], change))

    async def get_callbacks(request: Request) -> Response:
        return JSONResponse(state.callback_settings.view())

    async def put_callbacks(request: Request) -> Response:
        change = CallbacksIn.model_validate(await _json_body(request))
        state.callback_settings = CallbackSettings(**change.model_dump())
        return JSONResponse(state.callback_settings.view())

    async def get_callback_log(request: Request) -> Response:
        return JSONResponse(state.callback_log.view())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/_sim/health", health, methods=["GET"]),
            Route("/_sim/tasks", post_tasks, methods=["POST"]),
            Route("/_sim/tasks/{task_id:path}", get_task, methods=["GET"]),
            Route("/_sim/calls", get_calls, methods=["GET"]),
            Route("/_sim/stats", get_stats, methods=["GET"]),
            Route("/_sim/faults", get_faults, methods=["GET"]),
            Route("/_sim/faults", change_faults, methods=["PUT", "PATCH"]),
            Route("/_sim/config", get_config, methods=["GET"]),
            Route("/_sim/config", change_config, methods=["PATCH"]),
            Route("/_sim/numbers", get_numbers, methods=["GET"]),
            Route("/_sim/numbers/{number}", get_number, methods=["GET"]),
            Route("/_sim/numbers/{number}", put_number, methods=["PUT"]),
            Route("/_sim/callbacks", get_callbacks, methods=["GET"]),
            Route("/_sim/callbacks", put_callbacks, methods=["PUT"]),
            Route("/_sim/callbacks/log", get_callback_log, methods=["GET"]),
            Route("/_sim/reset", reset, methods=["POST"]),
        ],
        exception_handlers={
            ControlError: _unprocessable,
            ValidationError: _unprocessable,
        },
    )
    return app


def _registered_view(state: SimState, task: SimTask) -> dict[str, Any]:
    view = state.task_view(task.task_id)
    assert view is not None
    return view


async def _unprocessable(request: Request, error: Exception) -> Response:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        detail = f"{where}: {first['msg']}" if where else first["msg"]
    else:
        detail = str(error)
    return JSONResponse({"detail": detail}, status_code=422)


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ControlError("the body must be JSON") from None


def _float(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise ControlError(f"not a number: {value!r}") from None


def _endpoint(value: str | None) -> Endpoint | None:
    if value is None or value == "":
        return None
    try:
        return Endpoint(value)
    except ValueError:
        raise ControlError(f"endpoint must be one of {[e.value for e in Endpoint]}") from None

"""`phonebridge demo`: `up`, plus the upstream simulator and a signature-checking receiver, with
sample tasks flowing through the production code paths and a live view of them.

The samples: one check per phone_status submitted through `POST /v1/checks` (the simulator
answers each after a different delay and then calls the check's callback, so its answer reaches
the receiver within about a second of being ready; `ring` finishes at once), plus two task_ids
registered with `POST /v1/tasks` whose ids script the simulator (see service/sim/scripts.py): one
that never answers (it expires after --task-ttl seconds) and one upstream rejects (it fails). Beside
them, a small check job (`POST /v1/check-jobs`) of 20 lines: 18 numbers the simulator answers
after 1 to 6 s, one repeated (a duplicate, checked once) and one that is no phone number
(rejected); its progress is one line of the view, its items' webhooks are counted there, and its
`job.completed` webhook ends it. The children get compressed polling times, the API's own URL as
PHONEBRIDGE_PUBLIC_URL, and may deliver to the receiver on loopback
(PHONEBRIDGE_WEBHOOK_ALLOW_PRIVATE=true).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import secrets
import sys
import time
from pathlib import Path

import httpx

from service.config import ENV_PREFIX, Settings
from service.domain.phone_numbers import DEFAULT_CHECK_COUNTRIES, PhoneNumber, parse_phone_number
from service.domain.states import TaskState
from service.logs import JsonFormatter
from service.run import receiver as receiver_module
from service.run.datadir import data_dir_lock
from service.run.demo_client import DemoClient
from service.run.demo_samples import (
    SAMPLE_STATUSES,
    expected_job_verdicts,
    sample_checks,
    sample_job_lines,
    sample_tasks,
)
from service.run.processes import ChildSpec, free_port, phonebridge_command
from service.run.receiver import ReceiverServer
from service.run.supervisor import (
    StopRequested,
    Supervisor,
    SupervisorFailed,
    silence_stdout,
)
from service.run.up import UpOptions, api_base_url, start_stack, uses_embedded_servers
from service.run.view import (
    DemoView,
    JobView,
    PlainView,
    RichView,
    SampleTask,
    Snapshot,
)
from service.sim.defaults import DEFAULT_API_ID, DEFAULT_API_SECRET
from service.sim.scripts import Fate, FateKind, TaskScript
from service.sim.server import SimControl

DONE_MESSAGE = "all sample tasks final and webhooks verified"
NOT_DONE_MESSAGE = "not everything finished as expected"
JOB_DONE_MESSAGE = "sample job completed as expected"
JOB_NOT_DONE_MESSAGE = "sample job did not complete as expected"
SIM_START_TIMEOUT_S = 60.0
KEY_CREATE_TIMEOUT_S = 60.0
VIEW_INTERVAL_S = 0.5
# Past the expiry, how long the demo waits before saying what has not finished.
PATIENCE_AFTER_TTL_S = 60.0


def sample_check_script(status: str, ready_after_s: float) -> str:
    """The simulator's script for one sample check's number (the task_id grammar without sim-)."""
    return TaskScript(Fate(FateKind.STATUS, phone_status=status), pending_s=ready_after_s).text


def demo_child_env(upstream_base_url: str, task_ttl_s: float, api_url: str) -> dict[str, str]:
    """What the demo changes for its children: the simulator upstream, fast schedules, and the
    API's URL as the one the simulator calls back."""
    return {
        f"{ENV_PREFIX}PUBLIC_URL": api_url,
        f"{ENV_PREFIX}UPSTREAM_BASE_URL": upstream_base_url,
        # The simulator's documented demo credentials, not a real account's.
        f"{ENV_PREFIX}UPSTREAM_API_ID": DEFAULT_API_ID,
        f"{ENV_PREFIX}UPSTREAM_API_SECRET": DEFAULT_API_SECRET,
        f"{ENV_PREFIX}WEBHOOK_ALLOW_PRIVATE": "true",
        f"{ENV_PREFIX}POLL_INITIAL_S": "0.5",
        # Checks carry a callback: the safety net may wait longer than plain polling.
        f"{ENV_PREFIX}HINTED_POLL_INITIAL_S": "5",
        f"{ENV_PREFIX}POLL_MAX_S": "3",
        f"{ENV_PREFIX}TASK_TTL_S": f"{task_ttl_s:g}",
        f"{ENV_PREFIX}WEBHOOK_RETRY_SCHEDULE": "1,2,5,10,30",
    }


def create_api_key(supervisor: Supervisor, env: dict[str, str], name: str, log_dir: Path) -> str:
    """A client and key made by `phonebridge api-key create`, as an operator would."""
    spec = ChildSpec(
        name="api-key create",
        argv=phonebridge_command("api-key", "create", "--name", name),
        env=env,
        capture_stdout=True,
        log_path=log_dir / "api-key-create.log",
    )
    lines = supervisor.run_to_completion(spec, KEY_CREATE_TIMEOUT_S).strip().splitlines()
    if not lines:
        raise SupervisorFailed("api-key create printed no key")
    return lines[-1].strip()


def log_receiver_to(path: Path) -> None:
    """The in-process receiver's log lines go to a file like every child's: the view already
    shows each webhook, and with stdout piped (`| tee`) they showed twice in the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    receiver_log = logging.getLogger(receiver_module.__name__)
    receiver_log.handlers[:] = [handler]
    receiver_log.propagate = False


def _wait_for_simulator(supervisor: Supervisor, base_url: str) -> None:
    with httpx.Client(timeout=1.0) as client:  # one TLS context for the whole wait

        def answers() -> bool:
            try:
                return client.get(f"{base_url}/_sim/health").status_code == 200
            except httpx.HTTPError:
                return False

        supervisor.wait_until(answers, SIM_START_TIMEOUT_S, "the upstream simulator")


def usage_text(
    api_url: str,
    api_key: str,
    example_task_id: str,
    event_id: str | None,
    job_id: str | None = None,
) -> str:
    """The summary printed once the demo is done: where things are, and what to try."""
    auth = '-H "Authorization: Bearer $KEY"'
    lines = [
        f"API:     {api_url}   (interactive docs: {api_url}/docs)",
        f"API key: {api_key}",
        f"Portal:  {api_url}/portal   (open it in a browser; sign in with the API key above)",
        "",
        "Copy and paste:",
        f"  KEY={api_key}",
        f"  curl -s {auth} {api_url}/v1/tasks",
        f"  curl -s {auth} -H 'content-type: application/json' "
        f'-d \'{{"task_id": "sim-busy-2-mine"}}\' {api_url}/v1/tasks',
        f"  curl -s {auth} {api_url}/v1/tasks/sim-busy-2-mine",
        f"  curl -s {auth} {api_url}/v1/tasks/{example_task_id}",
        f"  curl -s {auth} -H 'content-type: application/json' -H 'Idempotency-Key: my-first' "
        f'-d \'{{"phone_number": "+52 55 1234 5678"}}\' {api_url}/v1/checks',
        f"  curl -s {auth} {api_url}/v1/events",
    ]
    if event_id is not None:
        lines.append(f"  curl -s {auth} {api_url}/v1/events/{event_id}/deliveries")
    if job_id is not None:
        lines += [
            f"  curl -s {auth} {api_url}/v1/check-jobs/{job_id}",
            f"  curl -s {auth} {api_url}/v1/check-jobs/{job_id}/rejections",
            f"  curl -s {auth} -H 'Accept: text/csv' {api_url}/v1/check-jobs/{job_id}/results",
        ]
    lines += [
        "  printf 'phone_number,reference\\n+52 55 1234 5678,first\\n' > list.csv",
        f"  PHONEBRIDGE_API_KEY=$KEY phonebridge check-file list.csv --out results.csv "
        f"--url {api_url}",
    ]
    lines += [
        f"  curl -s {auth} {api_url}/v1/subscriptions",
        f"  curl -s {api_url}/readyz",
        "",
        "Task ids like sim-<phone_status>-<pending answers> script the simulator "
        "(e.g. sim-ring-3, sim-never, sim-invalid).",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    """`phonebridge demo`: until Ctrl-C or SIGTERM (exit 0), or a failure that stops it (1)."""
    data_dir = settings.data_dir.resolve()
    lock = data_dir_lock(data_dir) if uses_embedded_servers(settings) else contextlib.nullcontext()
    supervisor = Supervisor(prefix="phonebridge demo")
    try:
        with lock, supervisor, ReceiverServer() as receiver:
            return _run(args, settings, supervisor, receiver)
    except StopRequested:
        supervisor.say("stopped")
        return 0
    except BrokenPipeError:
        # The output's reader went away (SIGPIPE's counterpart): everything was stopped in order
        # on the way out of the supervisor.
        silence_stdout()
        return 0
    except SupervisorFailed as failure:
        supervisor.say(f"error: {failure}")
        return 1


def _run(
    args: argparse.Namespace,
    settings: Settings,
    supervisor: Supervisor,
    receiver: ReceiverServer,
) -> int:
    started = time.monotonic()
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    log_dir = settings.data_dir.resolve() / "logs"
    supervisor.say(f"starting; process logs go to {log_dir}")
    log_receiver_to(log_dir / "demo-receiver.log")
    # The port is chosen here, so the API can be told its own URL (the simulator calls it back).
    api_port = args.port or free_port(args.host)
    options = UpOptions(
        host=args.host,
        port=api_port,
        child_env=demo_child_env(sim_url, args.task_ttl, api_base_url(args.host, api_port)),
        log_dir=log_dir,
        command="demo",
    )
    stack = start_stack(supervisor, settings, options)
    env = dict(stack.env)
    supervisor.launch(
        ChildSpec(
            name="upstream-sim",
            argv=phonebridge_command("upstream-sim", "--port", str(sim_port)),
            env=env,
            log_path=log_dir / "upstream-sim.log",
        )
    )
    _wait_for_simulator(supervisor, sim_url)
    supervisor.say(f"API listening on {stack.api_url}; upstream simulator on {sim_url}")

    tag = secrets.token_hex(3)
    api_key = create_api_key(supervisor, env, f"demo-{tag}", log_dir)
    # Said as soon as they exist: the sample tasks take up to a minute, and a newcomer should not
    # have to wait for them to find the key (the copy-and-paste guide follows them).
    supervisor.say(f"API key: {api_key}   portal: {stack.api_url}/portal (sign in with the key)")
    client = DemoClient(stack.api_url, api_key)
    try:
        _, secret = client.subscribe(f"{receiver.base_url}/webhooks")
        receiver.state.add_secret(secret)
        samples = sample_tasks(tag)
        client.register(samples)
        samples = _submit_sample_checks(client, SimControl(sim_url), tag) + samples
        job = _create_sample_job(client, SimControl(sim_url), tag)
        supervisor.say(
            f"submitted {len(SAMPLE_STATUSES)} sample checks, registered 2 task_ids and "
            f"created a check job of {len(sample_job_lines())} lines; "
            f"webhooks go to {receiver.base_url}/webhooks"
        )
        plain = args.plain or not sys.stdout.isatty()
        view: DemoView = PlainView() if plain else RichView()
        try:
            snapshot = _follow(
                supervisor, client, receiver, samples, job, view, started, args.task_ttl
            )
        finally:
            view.close()
        problems = snapshot.unexpected()
        if snapshot.all_done:
            supervisor.say(f"{DONE_MESSAGE} ({len(samples)} tasks, {snapshot.elapsed_s:.1f} s)")
        else:
            supervisor.say(f"{NOT_DONE_MESSAGE}: {'; '.join(problems) or 'see the view above'}")
        supervisor.say(_job_verdict(snapshot))
        first_event = next(
            (
                w.webhook_id
                for w in snapshot.webhooks
                if w.verified and snapshot.is_sample_webhook(w)
            ),
            None,
        )
        job_id = None if snapshot.job is None else snapshot.job.job_id
        print(
            usage_text(stack.api_url, api_key, samples[0].task_id, first_event, job_id),
            flush=True,
        )
    finally:
        client.close()
    while True:
        supervisor.tend(60.0)


def _submit_sample_checks(client: DemoClient, sim: SimControl, tag: str) -> list[SampleTask]:
    """One check per phone_status, through POST /v1/checks as a client would submit it."""
    samples = []
    try:
        for index, (written, digits, status, ready_after_s) in enumerate(sample_checks()):
            sim.script_number(digits, sample_check_script(status, ready_after_s))
            task_id = client.submit(written, f"demo-{tag}-{index}")
            samples.append(SampleTask(task_id, TaskState.COMPLETED, status))
    finally:
        sim.close()
    return samples


def _create_sample_job(client: DemoClient, sim: SimControl, tag: str) -> JobView:
    """The sample job, its numbers scripted in the simulator first; a job that cannot be
    created is shown with the reason, and the sample tasks go on without it."""
    expected = expected_job_verdicts()
    try:
        for written, _, status, ready_after_s in sample_job_lines():
            if status is None:
                continue
            number = parse_phone_number(written, DEFAULT_CHECK_COUNTRIES)
            assert isinstance(number, PhoneNumber), written
            sim.script_number(number.digits, sample_check_script(status, ready_after_s))
    finally:
        sim.close()
    lines = [(written, reference) for written, reference, _, _ in sample_job_lines()]
    try:
        return JobView.of(client.create_job(lines, f"demo-{tag}-job"), expected)
    except SupervisorFailed as failure:
        return JobView(expected, problem=f"could not be created: {failure}")


def _job_verdict(snapshot: Snapshot) -> str:
    job = snapshot.job
    if job is None or job.progress is None:
        return f"{JOB_NOT_DONE_MESSAGE}: {snapshot.job_line()}"
    items, completed = snapshot.job_webhooks()
    if job.as_expected and completed:
        progress = job.progress
        return (
            f"{JOB_DONE_MESSAGE}: {progress.job_id} {progress.final} checked, "
            f"{progress.duplicates} duplicate(s), {progress.rejected} rejected; "
            f"{items} item webhook(s) and its job.completed verified"
        )
    return (
        f"{JOB_NOT_DONE_MESSAGE}: {snapshot.job_line()}; rows by verdict {job.by_verdict}, "
        f"expected {dict(job.expected)}"
    )


def _follow(
    supervisor: Supervisor,
    client: DemoClient,
    receiver: ReceiverServer,
    samples: list[SampleTask],
    job: JobView,
    view: DemoView,
    started: float,
    task_ttl_s: float,
) -> Snapshot:
    """Show the tasks and the job until all are done as expected, or until patience runs
    out."""
    give_up_at = time.monotonic() + task_ttl_s + PATIENCE_AFTER_TTL_S
    while True:
        if job.job_id is not None:
            job = JobView.of(client.job(job.job_id), job.expected)
        snapshot = Snapshot(
            samples=samples,
            tasks=client.tasks(samples),
            webhooks=receiver.state.received(),
            elapsed_s=time.monotonic() - started,
            job=job,
        )
        view.show(snapshot)
        if (snapshot.all_done and snapshot.job_settled) or time.monotonic() > give_up_at:
            return snapshot
        if snapshot.final_count == len(samples) and snapshot.unexpected():
            return snapshot
        supervisor.tend(VIEW_INTERVAL_S)

"""The demo's view of its sample tasks, its sample check job and the webhooks they cause: a live
table on a terminal (rich), or one plain line per change otherwise (pipes, logs, tests). The job
is one line of progress (the same words as `phonebridge check-file`'s) under the tasks; its
items' webhooks are counted in that line rather than listed."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from service.domain.check_file import JobProgress, progress_text
from service.domain.states import EventType, TaskState
from service.run.receiver import ReceivedWebhook

FINAL_STATES = frozenset(state for state in TaskState if state.is_final)


@dataclass(frozen=True)
class SampleTask:
    task_id: str
    expected_state: TaskState
    expected_phone_status: str | None = None

    @property
    def expectation(self) -> str:
        if self.expected_phone_status is None:
            return self.expected_state
        return f"{self.expected_state} ({self.expected_phone_status})"


@dataclass(frozen=True)
class TaskView:
    state: TaskState
    phone_status: str | None
    poll_count: int
    error_code: str | None

    @classmethod
    def of(cls, task: Mapping[str, Any]) -> TaskView:
        result = task.get("result") or {}
        error = task.get("last_error") or {}
        return cls(
            state=TaskState(task["state"]),
            phone_status=result.get("phone_status"),
            poll_count=int(task.get("poll_count") or 0),
            error_code=error.get("code"),
        )

    @property
    def outcome(self) -> str:
        if self.phone_status is not None:
            return f"{self.state} ({self.phone_status})"
        if self.error_code is not None and self.state in FINAL_STATES:
            return f"{self.state} ({self.error_code})"
        return self.state


@dataclass(frozen=True)
class JobView:
    """The demo's sample job: as the API shows it, or why it could not be created. `expected`:
    the rows the job's results should have by verdict, from the simulator's scripts."""

    expected: Mapping[str, int]
    progress: JobProgress | None = None
    problem: str | None = None
    by_verdict: Mapping[str, int] | None = None

    @classmethod
    def of(cls, job: Mapping[str, Any], expected: Mapping[str, int]) -> JobView:
        counts = job.get("counts") or {}
        return cls(expected, JobProgress.of(job), None, dict(counts.get("by_verdict") or {}))

    @property
    def job_id(self) -> str | None:
        return None if self.progress is None else self.progress.job_id

    @property
    def as_expected(self) -> bool:
        """Over, with as many result rows of each verdict as the scripts say."""
        return (
            self.progress is not None
            and self.progress.is_over
            and {k: v for k, v in (self.by_verdict or {}).items() if v} == dict(self.expected)
        )


@dataclass(frozen=True)
class Snapshot:
    """The sample tasks as the API shows them, the sample job, and the webhooks the receiver
    got."""

    samples: Sequence[SampleTask]
    tasks: Mapping[str, TaskView]
    webhooks: Sequence[ReceivedWebhook]
    elapsed_s: float
    job: JobView | None = None

    def task(self, task_id: str) -> TaskView | None:
        return self.tasks.get(task_id)

    def verified_webhook_for(self, task_id: str) -> bool:
        return any(w.task_id == task_id and w.verified for w in self.webhooks)

    def webhook_mark(self, task_id: str) -> str:
        arrived = [w for w in self.webhooks if w.task_id == task_id]
        if not arrived:
            return "-"
        return "verified" if any(w.verified for w in arrived) else "NOT VERIFIED"

    @property
    def final_count(self) -> int:
        return sum(
            1
            for sample in self.samples
            if (task := self.task(sample.task_id)) is not None and task.state in FINAL_STATES
        )

    def unexpected(self) -> list[str]:
        """Final tasks that did not end as their script says, described."""
        problems = []
        for sample in self.samples:
            task = self.task(sample.task_id)
            if task is None or task.state not in FINAL_STATES:
                continue
            if (task.state, task.phone_status) != (
                sample.expected_state,
                sample.expected_phone_status,
            ):
                problems.append(
                    f"{sample.task_id} ended {task.outcome}, expected {sample.expectation}"
                )
        return problems

    @property
    def all_done(self) -> bool:
        """Every sample task final as expected, and a verified webhook for each."""
        return (
            self.final_count == len(self.samples)
            and not self.unexpected()
            and all(self.verified_webhook_for(s.task_id) for s in self.samples)
        )

    def is_sample_webhook(self, webhook: ReceivedWebhook) -> bool:
        return any(webhook.task_id == sample.task_id for sample in self.samples)

    def job_webhooks(self) -> tuple[int, bool]:
        """The sample job's items' verified webhooks (distinct), and whether its verified
        `job.completed` arrived."""
        job_id = None if self.job is None else self.job.job_id
        if job_id is None:
            return 0, False
        items = {
            w.webhook_id
            for w in self.webhooks
            if w.verified and w.job_id == job_id and w.event_type != EventType.JOB_COMPLETED
        }
        completed = any(
            w.verified and w.job_id == job_id and w.event_type == EventType.JOB_COMPLETED
            for w in self.webhooks
        )
        return len(items), completed

    @property
    def job_settled(self) -> bool:
        """Nothing more to wait for from the sample job: it could not be created, or it is over
        and its `job.completed` webhook arrived verified."""
        if self.job is None or self.job.progress is None:
            return True
        return self.job.progress.is_over and self.job_webhooks()[1]

    def job_line(self) -> str | None:
        """The sample job's progress, its items' webhooks and its `job.completed`."""
        if self.job is None:
            return None
        if self.job.progress is None:
            return f"sample job: {self.job.problem}"
        items, completed = self.job_webhooks()
        line = f"sample job {progress_text(self.job.progress)}; {items} item webhook(s) verified"
        return line + ("; job.completed webhook verified" if completed else "")


class DemoView(Protocol):
    def show(self, snapshot: Snapshot) -> None: ...

    def close(self) -> None: ...


class PlainView:
    """One line per task transition and per webhook, for output that is not a terminal."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out
        self._states: dict[str, str] = {}
        self._webhooks_seen = 0
        self._job_line: str | None = None

    def _say(self, line: str) -> None:
        print(line, file=self._out or sys.stdout, flush=True)

    def show(self, snapshot: Snapshot) -> None:
        for sample in snapshot.samples:
            task = snapshot.task(sample.task_id)
            if task is None:
                continue
            before = self._states.get(sample.task_id)
            if before == task.state:
                continue
            self._states[sample.task_id] = task.state
            if before is None and task.state is not TaskState.PENDING:
                # A check upstream finished at once is final the first time it is seen.
                self._say(
                    f"task {sample.task_id}: -> {task.outcome} at once "
                    f"(expected {sample.expectation})"
                )
            elif before is None:
                self._say(f"task {sample.task_id}: {task.state} (expect {sample.expectation})")
            else:
                self._say(
                    f"task {sample.task_id}: {before} -> {task.outcome} "
                    f"after {task.poll_count} poll(s)"
                )
        for webhook in snapshot.webhooks[self._webhooks_seen :]:
            if webhook.job_id is not None and webhook.event_type != EventType.JOB_COMPLETED:
                continue  # a job item's: counted in the job's line
            verdict = "signature verified" if webhook.verified else "signature NOT verified"
            again = " (duplicate)" if webhook.duplicate else ""
            subject = webhook.task_id or webhook.job_id
            self._say(
                f"webhook {webhook.webhook_id} {webhook.event_type} {subject}: {verdict}{again}"
            )
        self._webhooks_seen = len(snapshot.webhooks)
        job_line = snapshot.job_line()
        if job_line is not None and job_line != self._job_line:
            self._say(job_line)
            self._job_line = job_line

    def close(self) -> None:
        pass


class RichView:
    """A live table redrawn in place on a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console()
        self._live = Live(console=self._console, refresh_per_second=4, transient=False)
        self._live.start()

    def show(self, snapshot: Snapshot) -> None:
        self._live.update(self._render(snapshot))

    def _render(self, snapshot: Snapshot) -> Any:
        from rich.console import Group
        from rich.table import Table

        styles = {
            TaskState.COMPLETED: "green",
            TaskState.EXPIRED: "yellow",
            TaskState.FAILED: "red",
            TaskState.PENDING: "cyan",
        }
        table = Table(
            title=f"phonebridge demo: {snapshot.final_count}/{len(snapshot.samples)} final, "
            f"{sum(1 for w in snapshot.webhooks if w.verified)} verified webhook(s), "
            f"{snapshot.elapsed_s:.0f} s",
            title_justify="left",
        )
        for column in ("task_id", "expected", "state", "polls", "webhook"):
            table.add_column(column)
        for sample in snapshot.samples:
            task = snapshot.task(sample.task_id)
            if task is None:
                table.add_row(sample.task_id, sample.expectation, "-", "-", "-")
                continue
            style = styles.get(task.state, "")
            mark = snapshot.webhook_mark(sample.task_id)
            mark_style = {"verified": "green", "-": "dim"}.get(mark, "bold red")
            table.add_row(
                sample.task_id,
                sample.expectation,
                f"[{style}]{task.outcome}[/]" if style else task.outcome,
                str(task.poll_count),
                f"[{mark_style}]{mark}[/]",
            )
        job_line = snapshot.job_line()
        if job_line is None:
            return table
        return Group(table, self._job_row(snapshot, job_line))

    @staticmethod
    def _job_row(snapshot: Snapshot, job_line: str) -> Any:
        """The sample job: a bar of its submitted items' final answers, and its line."""
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        row = Table.grid(padding=(0, 1))
        progress = None if snapshot.job is None else snapshot.job.progress
        if progress is None:
            row.add_row(f"[yellow]{job_line}[/]")
            return row
        bar = ProgressBar(total=progress.to_submit or None, completed=progress.final, width=20)
        row.add_row(bar, job_line)
        return row

    def close(self) -> None:
        self._live.stop()

"""The metrics phonebridge exports, as a scraper sees them, and the series a PromQL query names:
what the tests of deploy/ (alert rules, their unit tests, the dashboard) check their queries
against, so that renaming a metric or a label fails a test instead of silencing an alert; and
promtool, which checks the queries themselves.

What is exported is read from the service itself: the exposition the API's GET /metrics writes
(service/observability/scrape.py's `render_metrics`) with every part of its state present, which
ends with the process registry that the worker's and the scheduler's exporter ports serve too
(service/observability/metrics.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

# The counters and histograms of every process: imported by each that counts, so registered here.
import service.observability.metrics  # noqa: F401
from service.observability.scrape import OperationsState, render_metrics
from service.store.stats import StoreStats
from service.upstream.pause import PauseState
from service.upstream.ratelimit import LimiterStatus

# What Prometheus itself adds to every scraped series, and the series it makes per target.
TARGET_LABELS = frozenset({"job", "instance"})
PROMETHEUS_SERIES = {"up": TARGET_LABELS}
# The suffixes of a family's samples, by its type (the OpenMetrics names prometheus_client uses).
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}
TYPE_LABELS = {"histogram": frozenset({"le"}), "summary": frozenset({"quantile"})}

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def full_operations_state() -> OperationsState:
    """What the API reads at scrape time with everything there: Redis and PostgreSQL answering,
    a pause open, a store snapshot with a failing subscription and learnt completion times."""
    store = StoreStats(
        tasks_by_state={"pending": 1},
        due_tasks=1,
        oldest_due_task_age_s=1.0,
        deliveries_by_state={"pending": 1},
        due_deliveries=1,
        oldest_due_delivery_age_s=1.0,
        completion_estimate_weight=1.0,
        completion_time_quantiles_s={"0.5": 10.0},
        failing_subscriptions_s={"sub_example": 60.0},
        job_items_to_submit={"waiting": 120, "standby": 500},
    )
    return OperationsState(
        NOW,
        max_rps=10,
        redis_up=True,
        limiter=LimiterStatus(blocked_for_s=0.0, factor=1.0),
        pause=PauseState(reason="KEY_EXPIRED", since=NOW - timedelta(minutes=1)),
        snapshot_at=NOW,
        store=store,
        database_up=True,
    )


def exported_series() -> dict[str, frozenset[str]]:
    """Every sample name a query can select, with the labels its series carry (the target labels
    job and instance included)."""
    registered = _registered_label_names()
    series: dict[str, frozenset[str]] = dict(PROMETHEUS_SERIES)
    exposition = render_metrics(full_operations_state()).decode()
    for family in text_string_to_metric_families(exposition):
        labels = set(registered.get(family.name, ())) | TYPE_LABELS.get(family.type, frozenset())
        labels |= {name for sample in family.samples for name in sample.labels}
        for suffix in SAMPLE_SUFFIXES.get(family.type, ("",)):
            series[family.name + suffix] = frozenset(labels) | TARGET_LABELS
    return series


def _registered_label_names() -> dict[str, tuple[str, ...]]:
    # A labelled counter that has counted nothing yet writes no sample, hence no label: its label
    # names come from the metric object itself.
    found: dict[str, tuple[str, ...]] = {}
    # The registry has no public listing of its collectors.
    for collector in REGISTRY._collector_to_names:
        name = getattr(collector, "_name", None)
        if isinstance(name, str):
            found[name] = tuple(getattr(collector, "_labelnames", ()))
    return found


@dataclass(frozen=True)
class Selector:
    """One series a query names, with the labels its matchers use."""

    metric: str
    labels: frozenset[str]
    matchers: str


# A metric name followed by an optional {matchers}; PromQL's functions and keywords are followed by
# "(" and are not names of ours (every series of ours starts with phonebridge_, or is `up`).
_SELECTOR = re.compile(r"\b(phonebridge_[a-z0-9_]+|up)\b\s*(\{([^}]*)\})?(?!\s*\()")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def selectors(query: str) -> Iterator[Selector]:
    for match in _SELECTOR.finditer(query):
        matchers = match.group(3) or ""
        labels = frozenset(_MATCHER_LABEL.findall(_without_strings(matchers)))
        yield Selector(match.group(1), labels, matchers)


def grouping_labels(query: str) -> set[str]:
    """The labels a query groups or matches by (`by (reason)`, `on ()`)."""
    return {
        label.strip()
        for match in _GROUPING.finditer(query)
        for label in match.group(1).split(",")
        if label.strip()
    }


def _without_strings(matchers: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', matchers)


def unknown_names(query: str, exported: dict[str, frozenset[str]]) -> list[str]:
    """What a query names that the service does not export: a metric, a label of one, or a label
    it groups by that none of its metrics carries. Empty when every name is real."""
    problems: list[str] = []
    carried: set[str] = set()
    for selector in selectors(query):
        labels = exported.get(selector.metric)
        if labels is None:
            problems.append(f"metric {selector.metric}")
            continue
        carried |= labels
        problems += [f"label {selector.metric}{{{label}}}" for label in selector.labels - labels]
    problems += [f"grouping label {label}" for label in grouping_labels(query) - carried]
    return problems


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool (Debian's prometheus package, installed by scripts/install-promtool): a test
    that needs it fails without it, never skips."""
    path = shutil.which("promtool")
    assert path, "promtool is missing: run scripts/install-promtool (Debian's prometheus package)"
    return subprocess.run(
        [path, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )

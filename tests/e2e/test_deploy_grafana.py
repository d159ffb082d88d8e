"""deploy/grafana/phonebridge.json, checked without a Grafana: every query is valid PromQL
(promtool parses each as a recording rule) and names only metrics and labels the service exports,
every panel reads the dashboard's Prometheus data source variable, the panels the operations
guide promises are there, and none overlaps another."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.metrics import exported_series, promtool, unknown_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD: dict[str, Any] = json.loads(
    (ROOT / "deploy" / "grafana" / "phonebridge.json").read_text()
)
PANELS: list[dict[str, Any]] = DASHBOARD["panels"]
GRAPHS = [panel for panel in PANELS if panel["type"] != "row"]
QUERIES = [(panel["title"], target["expr"]) for panel in GRAPHS for target in panel["targets"]]
# Grafana's own variables, as Prometheus would see them once Grafana has put in their values.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "6h"}
EXPORTED = exported_series()


def as_prometheus_sees_it(query: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    return query


def test_the_dashboard_shows_what_the_operations_guide_promises() -> None:
    titles = {panel["title"] for panel in PANELS}
    promised = {"Intake", "Detection lag", "Calls per task", "Ceiling use", "Pause"}
    assert promised | {"Deliveries by outcome", "Processes up"} <= titles


@pytest.mark.parametrize(("title", "query"), QUERIES, ids=[f"{t}: {q}" for t, q in QUERIES])
def test_a_query_names_only_metrics_and_labels_the_service_exports(title: str, query: str) -> None:
    assert unknown_names(query, EXPORTED) == [], title


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": as_prometheus_sees_it(query)}
                    for i, (_, query) in enumerate(QUERIES)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_panel_reads_the_prometheus_data_source_variable() -> None:
    (variable,) = DASHBOARD["templating"]["list"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    source = {"type": "prometheus", "uid": f"${{{variable['name']}}}"}
    for panel in GRAPHS:
        assert panel["datasource"] == source, panel["title"]
        assert all(target["datasource"] == source for target in panel["targets"]), panel["title"]


def test_panels_fit_the_grid_and_none_overlaps_another() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in PANELS:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells


def test_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in PANELS]
    assert len(ids) == len(set(ids))

"""deploy/prometheus/, checked as Prometheus would take it: promtool accepts the rules and the
scrape configurations, the rules' unit tests pass (a firing and a quiet case for each), every
metric and label a rule or a unit test's series names is one the service exports (so a rename
fails here instead of silencing an alert), the jobs the rules name are the scrape configs' jobs,
and every rule names a runbook section of docs/operations.md that says what it means, what to
look at and what to do.

promtool comes from Debian's prometheus package, which scripts/install (scripts/install-promtool)
installs: these tests fail, never skip, without it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.metrics import exported_series, promtool, selectors, unknown_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES_FILE = PROMETHEUS / "alerts.yml"
RULE_TESTS_FILE = PROMETHEUS / "alerts_test.yml"
SCRAPE_CONFIGS = (PROMETHEUS / "prometheus.yml", PROMETHEUS / "kubernetes.yml")
RUNBOOK = ROOT / "docs" / "operations.md"
RULES: list[dict[str, Any]] = [
    rule for group in yaml.safe_load(RULES_FILE.read_text())["groups"] for rule in group["rules"]
]
RULE_TESTS: list[dict[str, Any]] = yaml.safe_load(RULE_TESTS_FILE.read_text())["tests"]
RUNBOOK_PARTS = ("**What it means.**", "**What to look at.**", "**What to do.**")
EXPORTED = exported_series()


def rule_id(rule: dict[str, Any]) -> str:
    return str(rule["alert"])


def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", RULES_FILE)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in checked.stdout


def test_the_rules_unit_tests_pass() -> None:
    tested = promtool("test", "rules", RULE_TESTS_FILE)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_accepts_the_scrape_configuration_and_the_rules_it_loads() -> None:
    # Debian's promtool is built without Kubernetes service discovery, so it cannot read
    # kubernetes.yml; tests/e2e/test_deploy_kubernetes.py checks that one against the manifests.
    checked = promtool("check", "config", PROMETHEUS / "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_a_rule_names_only_metrics_and_labels_the_service_exports(rule: dict[str, Any]) -> None:
    assert unknown_names(rule["expr"], EXPORTED) == []


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_renaming_a_metric_a_rule_uses_fails_the_check(rule: dict[str, Any]) -> None:
    # The check above can fail: with any one of the rule's metrics renamed, it names it.
    for selector in selectors(rule["expr"]):
        renamed = {**EXPORTED}
        del renamed[selector.metric]
        assert f"metric {selector.metric}" in unknown_names(rule["expr"], renamed)


def input_series() -> list[str]:
    return [series["series"] for test in RULE_TESTS for series in test["input_series"]]


@pytest.mark.parametrize("series", sorted(set(input_series())))
def test_a_unit_tests_series_is_one_the_service_exports(series: str) -> None:
    assert unknown_names(series, EXPORTED) == []


def test_every_rule_is_seen_firing_and_quiet_by_the_unit_tests() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in RULE_TESTS:
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {rule_id(rule) for rule in RULES}
    assert names - firing == set()
    assert names - quiet == set()


def scrape_jobs(config: Path) -> set[str]:
    return {job["job_name"] for job in yaml.safe_load(config.read_text())["scrape_configs"]}


@pytest.mark.parametrize("config", SCRAPE_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_jobs_the_rules_name_are_the_scrape_configurations_jobs(config: Path) -> None:
    named: set[str] = set()
    for rule in RULES:
        for selector in selectors(rule["expr"]):
            named |= set(re.findall(r'job\s*=\s*"([^"]+)"', selector.matchers))
            for pattern in re.findall(r'job\s*=~\s*"([^"]+)"', selector.matchers):
                matched = {job for job in scrape_jobs(config) if re.fullmatch(pattern, job)}
                assert matched, f"{rule_id(rule)}: job=~{pattern!r} matches no job of {config}"
    assert named == {"phonebridge-api", "phonebridge-worker", "phonebridge-scheduler"}
    assert named <= scrape_jobs(config)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lowercased, punctuation dropped, spaces to
    hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    sections: dict[str, str] = {}
    for block in re.split(r"^#{2,3} ", RUNBOOK.read_text(), flags=re.MULTILINE)[1:]:
        heading, _, body = block.partition("\n")
        sections[github_anchor(heading)] = body
    return sections


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_a_rule_names_its_runbook_section_which_says_what_to_do(rule: dict[str, Any]) -> None:
    url = rule["annotations"]["runbook_url"]
    page, _, anchor = url.partition("#")
    assert page == "docs/operations.md"
    section = runbook_sections().get(anchor)
    assert section is not None, f"docs/operations.md has no section #{anchor}"
    assert f"`{rule_id(rule)}`" in section
    for part in RUNBOOK_PARTS:
        assert part in section, f"#{anchor} lacks {part}"


def test_the_runbooks_links_lead_to_its_sections() -> None:
    anchors = set(runbook_sections())
    links = re.findall(r"\]\(#([^)]+)\)", RUNBOOK.read_text())
    assert links
    assert set(links) <= anchors


def test_a_rule_has_a_severity_a_summary_and_a_description() -> None:
    for rule in RULES:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule_id(rule)
        assert rule["annotations"]["summary"], rule_id(rule)
        assert rule["annotations"]["description"], rule_id(rule)

"""deploy/kubernetes/, checked without a cluster: every manifest is valid against Kubernetes'
own schemas (kubernetes-validate, strict, offline), the API's probes ask the paths the API
really serves, the worker's and scheduler's liveness probes reach their exporter ports (which
answer /healthz while the process runs), every command is one the CLI has, every setting is a
setting, and deploy/prometheus/kubernetes.yml's jobs find exactly these pods."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from service.cli import build_parser
from service.config import ENV_PREFIX, Settings
from service.observability.exporter import start_metrics_exporter
from service.run.processes import free_port
from tests.support.api import api_client

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
SCRAPE_CONFIG = ROOT / "deploy" / "prometheus" / "kubernetes.yml"
# The oldest Kubernetes release still supported upstream when these were written.
KUBERNETES_VERSION = "1.30.0"
API_PORT = 8000
# In a pod every process binds all its interfaces: the pod's network is its boundary.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


RESOURCES = [doc for path in MANIFESTS for doc in documents(path)]


def resource_id(resource: dict[str, Any]) -> str:
    return f"{resource['kind']}/{resource['metadata']['name']}"


def named(kind: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in RESOURCES if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def container(kind: str, name: str) -> dict[str, Any]:
    (only,) = named(kind, name)["spec"]["template"]["spec"]["containers"]
    return dict(only)


def port_number(spec: dict[str, Any], port: str | int) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in spec["ports"] if p["name"] == port]
    return int(number)


CONFIG: dict[str, str] = named("ConfigMap", "phonebridge")["data"]


def test_the_manifests_run_the_three_processes_and_the_migration() -> None:
    assert {resource_id(r) for r in RESOURCES} == {
        "ConfigMap/phonebridge",
        "Job/phonebridge-migrate",
        "Deployment/phonebridge-api",
        "Service/phonebridge-api",
        "Deployment/phonebridge-worker",
        "Deployment/phonebridge-scheduler",
    }


@pytest.mark.parametrize("resource", RESOURCES, ids=resource_id)
def test_a_manifest_is_valid_against_the_kubernetes_schema(resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_rejects_a_misspelt_field() -> None:
    broken = yaml.safe_load(yaml.safe_dump(named("Deployment", "phonebridge-api")))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


async def test_the_apis_probes_ask_paths_the_real_api_answers_200(settings: Settings) -> None:
    api = container("Deployment", "phonebridge-api")
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    async with api_client(settings) as client:
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            get = api[probe]["httpGet"]
            assert port_number(api, get["port"]) == API_PORT
            assert (await client.get(get["path"])).status_code == 200, probe
    args = build_parser().parse_args(api["args"])
    assert (args.host, args.port) == (ALL_INTERFACES, API_PORT)


@pytest.mark.parametrize("process", ["worker", "scheduler"])
def test_a_worker_or_scheduler_is_probed_on_its_exporter_port(process: str) -> None:
    spec = container("Deployment", f"phonebridge-{process}")
    exporter_port = CONFIG[f"{ENV_PREFIX}{process.upper()}_METRICS_PORT"]

    assert "readinessProbe" not in spec  # it takes no traffic
    for probe in ("startupProbe", "livenessProbe"):
        get = spec[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert port_number(spec, get["port"]) == int(exporter_port)
    assert CONFIG[f"{ENV_PREFIX}METRICS_HOST"] == ALL_INTERFACES


async def test_an_exporter_port_answers_the_liveness_path(settings: Settings) -> None:
    port = free_port()
    start_metrics_exporter(settings, port, "worker")
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/healthz", timeout=5.0)
    assert response.status_code == 200


def containers() -> list[tuple[str, dict[str, Any]]]:
    return [
        (resource_id(r), c)
        for r in RESOURCES
        if "template" in r.get("spec", {})
        for c in r["spec"]["template"]["spec"]["containers"]
    ]


@pytest.mark.parametrize(("owner", "spec"), containers(), ids=[o for o, _ in containers()])
def test_a_container_runs_a_cli_command_with_the_shared_settings(
    owner: str, spec: dict[str, Any]
) -> None:
    build_parser().parse_args(spec["args"])  # argparse exits on an unknown command or option
    assert spec["envFrom"] == [
        {"configMapRef": {"name": "phonebridge"}},
        {"secretRef": {"name": "phonebridge"}},
    ]
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False


def test_every_variable_of_the_config_map_and_the_secret_is_a_setting() -> None:
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    header = (ROOT / "deploy" / "kubernetes" / "config.yaml").read_text()
    secret_keys = set(re.findall(r"--from-literal=(PHONEBRIDGE_[A-Z_]+)=", header))

    assert set(CONFIG) <= fields
    assert secret_keys <= fields
    assert {f"{ENV_PREFIX}DATABASE_URL", f"{ENV_PREFIX}SECRET_KEY"} <= secret_keys


def scrape_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def pod_targets(job: dict[str, Any]) -> set[tuple[str, int]]:
    """The (pod's deployment, port) pairs a job's keep rule selects among the manifests' pods."""
    (keep,) = [rule for rule in job["relabel_configs"] if rule.get("action") == "keep"]
    found: set[tuple[str, int]] = set()
    for resource in RESOURCES:
        if resource["kind"] != "Deployment":
            continue
        labels = resource["spec"]["template"]["metadata"]["labels"]
        for spec in resource["spec"]["template"]["spec"]["containers"]:
            for port in spec.get("ports", []):
                meta = {
                    "__meta_kubernetes_pod_label_app_kubernetes_io_name": labels.get(
                        "app.kubernetes.io/name", ""
                    ),
                    "__meta_kubernetes_pod_label_app_kubernetes_io_component": labels.get(
                        "app.kubernetes.io/component", ""
                    ),
                    "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                }
                value = ";".join(meta[label] for label in keep["source_labels"])
                if re.fullmatch(keep["regex"], value):
                    found.add((resource["metadata"]["name"], port["containerPort"]))
    return found


def test_each_scrape_job_finds_its_processes_metrics_port() -> None:
    jobs = scrape_jobs()
    metrics_port = {
        "phonebridge-api": API_PORT,
        "phonebridge-worker": int(CONFIG[f"{ENV_PREFIX}WORKER_METRICS_PORT"]),
        "phonebridge-scheduler": int(CONFIG[f"{ENV_PREFIX}SCHEDULER_METRICS_PORT"]),
    }
    assert set(jobs) == set(metrics_port)
    for name, port in metrics_port.items():
        assert pod_targets(jobs[name]) == {(name, port)}

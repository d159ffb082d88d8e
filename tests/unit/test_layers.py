"""The layer contracts of pyproject.toml's [tool.importlinter], as `lint-imports` in scripts/check
runs them: the real tree keeps them, and a copy of the tree with one wrong import breaks the
contract that names the rule."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))
PACKAGES = ("service", "workers", "migrations")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # lint-imports puts its working directory first on sys.path, so it reads the tree it runs in
    # rather than the installed package.
    return subprocess.run(
        [LINT_IMPORTS, "--no-logo", "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_layer_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        (
            "service/domain/leak.py",
            "from service.store import db",
            "service.domain imports nothing of ours",
        ),
        (
            "service/domain/leak.py",
            "import sqlalchemy",
            "service.domain does no I/O: no web, database, broker or HTTP library",
        ),
        (
            "service/store/leak.py",
            "from service.config import Settings",
            "service.store imports only service.domain",
        ),
        (
            "service/upstream/leak.py",
            "from service.store import tasks",
            "service.upstream imports no service.store",
        ),
        (
            "service/engine/leak.py",
            "from workers.app import create_celery_app",
            "service.api and workers are the top: only the phonebridge command imports them",
        ),
        (
            "service/api/portal/leak.py",
            "from service.store import tasks",
            "service.api (the portal included) reaches the database only through service.features",
        ),
        (
            "service/api/leak.py",
            "from service.store.subscriptions import SubscriptionRow",
            "service.api (the portal included) reaches the database only through service.features",
        ),
        (
            "service/features/leak.py",
            "from fastapi import HTTPException",
            "service.features, the operations every surface calls, imports no surface nor web "
            "framework",
        ),
        (
            "service/features/leak.py",
            "from service.api import errors",
            "service.features, the operations every surface calls, imports no surface nor web "
            "framework",
        ),
        (
            "service/observability/leak.py",
            "from service.engine import scheduler",
            "the worker's packages are layers: each imports only those below it, so none form "
            "a cycle",
        ),
        (
            "service/engine/leak.py",
            "from service.webhooks import batch_delivery",
            "polling and webhook delivery meet only in service.runtime",
        ),
        (
            "service/webhooks/leak.py",
            "from service.sim import defaults",
            "service.sim, the upstream simulator, runs only in upstream-sim and demo",
        ),
    ],
)
def test_a_wrong_import_breaks_the_contract_of_its_rule(
    tree_copy: Path, module: str, wrong_import: str, contract: str
) -> None:
    (tree_copy / module).write_text(f"{wrong_import}\n")

    result = lint_imports(tree_copy)

    assert result.returncode != 0
    assert f"{contract} BROKEN" in " ".join(result.stdout.split())

"""The schema's modules (service/store/tables/): what `from service.store.tables import Base`
alone gives, as migrations/env.py and an older release's comparison import it, holds every table
that any module of the package declares, so Alembic sees them all."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from service.store.tables import base, check_jobs, checks, clients, tasks, webhooks

ROOT = Path(__file__).resolve().parents[2]
TABLES = ROOT / "service" / "store" / "tables"
MODULES = (base, check_jobs, checks, clients, tasks, webhooks)


def declared_table_names(path: Path) -> set[str]:
    """The `__tablename__` of every class the file declares, read from its source."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__tablename__" for target in node.targets
        ):
            assert isinstance(node.value, ast.Constant), path
            names.add(str(node.value.value))
    return names


def test_every_module_of_the_package_is_one_this_test_knows() -> None:
    files = {path.stem for path in TABLES.glob("*.py")} - {"__init__"}
    assert files == {module.__name__.rsplit(".", 1)[1] for module in MODULES}


def test_the_base_alone_holds_every_declared_table() -> None:
    declared = set().union(*(declared_table_names(path) for path in TABLES.glob("*.py")))
    # In a fresh interpreter: in this one, the imports above have declared every table already.
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "from service.store.tables import Base; print(*sorted(Base.metadata.tables))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert set(shown.stdout.split()) == declared
    assert {"clients", "tasks", "check_submissions", "deliveries", "check_jobs"} <= declared


def test_each_table_class_is_declared_on_the_one_base() -> None:
    for module in MODULES:
        for value in vars(module).values():
            if isinstance(value, type) and hasattr(value, "__tablename__"):
                assert issubclass(value, base.Base), value
                assert base.Base.metadata.tables[value.__tablename__] is value.__table__

"""Every module of service/ is imported by at least one test file, so a maintainer who changes a
module finds its tests by searching for its name (README, "Where a module's tests are").

A package's `__init__.py` is left out by rule: it only names its package. Nothing else is."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def product_modules(root: Path) -> set[str]:
    """The dotted names of service/'s modules, packages' `__init__.py` left out."""
    return {
        ".".join(path.relative_to(root).with_suffix("").parts)
        for path in (root / "service").rglob("*.py")
        if path.name != "__init__.py"
    }


def imported_names(sources: Iterable[Path]) -> set[str]:
    """Every dotted name the files import: `import a.b` gives a.b, `from a import b` gives a and
    a.b (b may be a module or a name in a)."""
    names: set[str] = set()
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def untested_modules(root: Path) -> list[str]:
    return sorted(product_modules(root) - imported_names((root / "tests").rglob("*.py")))


def test_every_module_of_service_is_imported_by_a_test() -> None:
    untested = untested_modules(ROOT)
    assert not untested, "no test file imports " + ", ".join(untested)


def test_a_module_that_no_test_imports_is_named(tmp_path: Path) -> None:
    (tmp_path / "service" / "pkg").mkdir(parents=True)
    (tmp_path / "tests").mkdir()
    for module in ("__init__.py", "pkg/__init__.py", "pkg/covered.py", "pkg/forgotten.py"):
        (tmp_path / "service" / module).write_text('"""A module."""\n')
    (tmp_path / "tests" / "test_covered.py").write_text("from service.pkg import covered\n")

    assert untested_modules(tmp_path) == ["service.pkg.forgotten"]

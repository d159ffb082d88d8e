"""The lock (requirements/dev.txt and runtime.txt, made by scripts/lock) against pyproject.toml:
scripts/install (dev.txt) and the Dockerfile (runtime.txt) install a lock with --require-hashes
and then the project with --no-deps, so a dependency that pyproject names and the lock lacks would
simply be missing, and a pin without hashes would stop the install."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "dev.txt"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
PROJECT = canonicalize_name("phonebridge")
# name==version: no range, no URL, no file:// path of one machine's checkout.
EXACT_PIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][A-Za-z0-9.+!_-]*")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def lock_entries(lock: Path) -> list[tuple[str, list[str]]]:
    """Each requirement of a lock with its options: pip-compile writes `name==version \\` and
    under it one `--hash=sha256:...` line per file of that version."""
    joined = lock.read_text().replace("\\\n", " ")
    lines = (line.split("#", 1)[0].strip() for line in joined.splitlines())
    return [(line.split()[0], line.split()[1:]) for line in lines if line]


def locked_versions(lock: Path = LOCK) -> dict[NormalizedName, Version]:
    pins = (requirement.split("==", 1) for requirement, _ in lock_entries(lock))
    return {canonicalize_name(name): Version(version) for name, version in pins}


def project_requirements(*extra_names: str) -> list[Requirement]:
    """pyproject's dependencies and those of the given extras (`dev`), with the project's own
    extras that they name (`phonebridge[embedded]`) opened up."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    lines = [*project["dependencies"], *(line for name in extra_names for line in extras[name])]
    pending = [Requirement(line) for line in lines]
    requirements: list[Requirement] = []
    while pending:
        requirement = pending.pop()
        if canonicalize_name(requirement.name) == PROJECT:
            pending += [Requirement(line) for extra in requirement.extras for line in extras[extra]]
        else:
            requirements.append(requirement)
    return requirements


def extra_requirements(requirement: Requirement) -> list[Requirement]:
    """What the extras of a requirement (`uvicorn[standard]`) add on this platform, from the
    installed distribution's metadata (the locked version, installed by scripts/install)."""
    added = []
    for line in metadata.requires(requirement.name) or []:
        candidate = Requirement(line)
        marker = candidate.marker
        if marker is None or "extra" not in str(marker):
            continue
        if any(marker.evaluate({"extra": extra}) for extra in requirement.extras):
            candidate.marker = None
            added.append(candidate)
    return added


@pytest.mark.parametrize("lock", [LOCK, RUNTIME_LOCK], ids=lambda lock: lock.name)
def test_the_lock_pins_an_exact_version_of_each_package_and_nothing_else(lock: Path) -> None:
    for requirement, options in lock_entries(lock):
        assert EXACT_PIN.fullmatch(requirement), requirement
        # and the files of that version, by hash: the installs run with --require-hashes
        assert options, f"{requirement} has no hashes: run scripts/lock"
        for option in options:
            assert HASH.fullmatch(option), f"{requirement} {option}"
    assert PROJECT not in locked_versions(lock)


@pytest.mark.parametrize(
    ("lock", "extra_names"), [(LOCK, ("dev",)), (RUNTIME_LOCK, ())], ids=["dev.txt", "runtime.txt"]
)
def test_every_dependency_of_pyproject_is_locked_at_a_version_it_allows(
    lock: Path, extra_names: tuple[str, ...]
) -> None:
    locked = locked_versions(lock)
    pending = project_requirements(*extra_names)
    checked: set[str] = set()
    while pending:
        requirement = pending.pop()
        if str(requirement) in checked:
            continue
        checked.add(str(requirement))
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not in {lock.name}: run scripts/lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{lock.name} pins {name}=={locked[name]}, outside {requirement}: run scripts/lock"
        )
        pending += extra_requirements(requirement)


def test_the_image_runs_the_versions_the_tests_ran() -> None:
    """runtime.txt is dev.txt's subset: the same version and the same files of each package."""
    dev = dict(lock_entries(LOCK))
    for requirement, hashes in lock_entries(RUNTIME_LOCK):
        assert requirement in dev, f"{requirement} is not in {LOCK.name}: run scripts/lock"
        assert sorted(hashes) == sorted(dev[requirement]), requirement

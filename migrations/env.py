"""Alembic environment: migrates the database named by PHONEBRIDGE_DATABASE_URL (or the URL
given by the caller through the config's main option)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from service.config import get_settings
from service.store.tables import Base

MIGRATION_LOCK_ID = 7_301_955_211  # any constant shared by every migrate process

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().sqlalchemy_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        # Several `migrate` steps may start at once (compose, `up`, rolling deploys): the first
        # one migrates, the others wait for it and then find nothing to do.
        connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})")
        connection.commit()
        try:
            context.configure(connection=connection, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})")
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

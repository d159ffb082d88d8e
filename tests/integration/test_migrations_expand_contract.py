"""Migrations are written expand-then-contract (migrations/README.md): at the newest revision, the
previous release (the commit before the newest migration, tests/support/releases.py) still finds
every table and column its code declares, with the same types, nullability and unique keys, so its
worker and scheduler keep running while the new release rolls out. A column is dropped or
renamed only by a migration of a release after the one that stopped reading it.

tests/e2e/test_upgrade.py runs that previous release against the migrated schema."""

from __future__ import annotations

from pathlib import Path

from alembic import command

from service.store.migrate import alembic_config, upgrade_to_head
from tests.support.releases import (
    ROOT,
    Release,
    newest_migration,
    previous_release_commit,
    schema_gaps,
    unpack_release,
)

# What migrations written before the rule took from the release before them, each reviewed (see
# migrations/README.md, "Migrations written before the rule"). Only the newest migration is held
# to this list: once a newer one lands, the rule applies to it in full.
KNOWN_BEFORE_THE_RULE: dict[str, set[tuple[str, str, str]]] = {
    "endpoint_health_0001": {
        # The previous release writes free-text reasons ("HTTP 410: ...") that no longer fit:
        # its worker fails to disable a subscription on a 410 until it is replaced.
        ("type changed", "subscriptions", "disabled_reason: VARCHAR(16) -> TEXT"),
        # subscription.disabled events have no task; the previous release never makes them.
        ("now nullable", "events", "task_pk"),
    },
}


def test_the_previous_release_finds_what_it_reads_in_the_migrated_schema(
    empty_database: str, tmp_path: Path
) -> None:
    previous = unpack_release(previous_release_commit(), tmp_path / "previous")
    upgrade_to_head(empty_database)
    head, path = newest_migration()

    gaps = set(schema_gaps(previous, empty_database))

    allowed = KNOWN_BEFORE_THE_RULE.get(head, set())
    assert gaps <= allowed, (
        f"{path} takes from the previous release ({previous.commit[:10]}) what it still reads: "
        f"{sorted(gaps - allowed)}. Expand now (add, copy, write both), contract in a later "
        "release (migrations/README.md)."
    )


def test_a_release_that_reads_what_the_schema_lacks_is_found(empty_database: str) -> None:
    """The check above can fail: this tree's own tables against the schema one revision before
    the newest lack what the newest migration adds."""
    head, _ = newest_migration()
    config = alembic_config(empty_database)
    command.upgrade(config, f"{head}-1")

    gaps = schema_gaps(Release("this tree", ROOT), empty_database)

    assert gaps, f"this tree's tables match the schema before {head}, which cannot be"

"""The busiest tables' changes since their statistics were made, and ANALYZE
(service/domain/table_statistics.py says when; service/engine/table_statistics.py runs it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# The tables the hot statements read, whose plans go wrong when they outgrow their statistics.
BUSIEST_TABLES: Final = ("tasks", "scheduled_submits", "check_job_items", "deliveries", "events")

# pg_stat_user_tables: the cumulative statistics (live rows, rows changed since the last ANALYZE),
# which every backend reports within about a second.
_CHANGES = text(
    """
    SELECT t.name, s.n_live_tup AS rows, s.n_mod_since_analyze AS changed
    FROM unnest(CAST(:tables AS text[])) AS t(name)
    JOIN pg_stat_user_tables AS s ON s.relid = to_regclass(t.name)
    """
)
# One scheduler at a time analyzes (the others find the lock taken and leave it).
STATISTICS_LOCK_ID: Final = 0x70625F616E61  # "pb_ana" (service/store/db.py take_turn)


@dataclass(frozen=True)
class TableChanges:
    table: str
    rows: int
    changed: int


async def changes_since_analyze(session: AsyncSession) -> list[TableChanges]:
    rows = await session.execute(_CHANGES, {"tables": list(BUSIEST_TABLES)})
    return [TableChanges(str(r.name), int(r.rows), int(r.changed)) for r in rows]


async def analyze(session: AsyncSession, table: str) -> None:
    """ANALYZE one of the busiest tables (in the session's transaction: other connections' plans
    of it are remade once it commits)."""
    if table not in BUSIEST_TABLES:
        raise ValueError(f"not one of the busiest tables: {table}")
    await session.execute(text(f"ANALYZE {table}"))

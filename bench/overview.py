"""The portal overview's chart statements at their cap: one client with 100,000 tasks finished in
the last 24 hours (90% completed, every phone_status), beside another client as large. Prints
each statement's time (median of 5) and the index it walks, then the load average.

    .venv/bin/python bench/overview.py [--tasks 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import psycopg
import support
from sqlalchemy import TextClause

from service.domain.answers import PhoneStatus
from service.store import portal

ROUNDS = 5

_INSERT_FINISHED = """
    INSERT INTO tasks (client_id, task_id, state, submitted_at, registered_at, expires_at,
                       completed_at, poll_count, updated_at, result, poll_history)
    SELECT %(client)s, 'T-' || g, CASE WHEN g %% 10 = 0 THEN 'expired' ELSE 'completed' END,
           now() - (g %% 86000) * interval '1 second', now() - (g %% 86000) * interval '1 second',
           now() + interval '1 day', now() - (g %% 86000) * interval '1 second', 2, now(),
           CASE WHEN g %% 10 = 0 THEN NULL ELSE jsonb_build_object(
               'phone_number', '0062****',
               'phone_status', (CAST(%(statuses)s AS text[]))[1 + g %% %(kinds)s]) END,
           '[]'::jsonb
    FROM generate_series(1, %(tasks)s) AS g
"""


def _psycopg_sql(statement: TextClause) -> str:
    return statement.text.replace(":client_id", "%(client_id)s").replace(":since", "%(since)s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="finished tasks per client")
    args = parser.parse_args()
    statuses = [status.value for status in PhoneStatus]
    with (
        support.scratch_database("bench_overview", migrated=True) as database,
        psycopg.connect(database.url, autocommit=True) as conn,
    ):
        clients = [
            conn.execute("INSERT INTO clients (name) VALUES (%s) RETURNING id", (name,)).fetchone()
            for name in ("measured", "neighbour")
        ]
        for row in clients:
            assert row is not None
            conn.execute(
                _INSERT_FINISHED,
                {"client": row[0], "tasks": args.tasks, "statuses": statuses, "kinds": 8},
            )
        conn.execute("VACUUM ANALYZE tasks")
        since_row = conn.execute("SELECT now() - interval '24 hours'").fetchone()
        assert clients[0] is not None
        assert since_row is not None
        params = {"client_id": clients[0][0], "since": since_row[0]}
        print(f"{args.tasks:,} tasks finished in the window per client, two clients")
        for name, statement in (
            ("tasks finished per hour by state", portal._FINISHED_BY_HOUR),
            (
                "completed tasks per hour by phone_status (the verdict chart)",
                portal._ANSWERS_BY_HOUR,
            ),
        ):
            sql = _psycopg_sql(statement)
            times = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                conn.execute(sql, params).fetchall()
                times.append((time.perf_counter() - started) * 1000)
            plan = [str(row[0]) for row in conn.execute("EXPLAIN " + sql, params).fetchall()]
            index = next((line.strip() for line in plan if "Index" in line), "no index")
            print(
                f"{name}: {statistics.median(times):.1f} ms "
                f"({' / '.join(f'{t:.1f}' for t in times)}); {index.split('  (')[0]}"
            )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load average: {load}")


if __name__ == "__main__":
    main()

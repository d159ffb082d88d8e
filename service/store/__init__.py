"""Every query of the service lives in this package; nothing outside it writes SQL.

Which of the three ways to write a query:

- **Raw psycopg** (`%s` placeholders, the API's own autocommit pool): only for statements on the
  API's per-request hot path, today task intake and reads (tasks.py) and the API key lookup
  (clients.py). Measured there, SQLAlchemy's checkout and execution cost about three times the
  CPU of the bare driver for the same INSERT. One statement per call, so no transaction. The
  most frequent of them, the single-task registration, runs on asyncpg (the API's intake pool,
  db.intake_pool), about half psycopg's CPU per statement: the same SQL text, its `%s` turned
  into `$1, $2, ...` by tasks.numbered.
- **`text()` through a SQLAlchemy session**: for the engine's set-based statements whose exact
  SQL is the point, where Core would only obscure it: lease claims with `FOR UPDATE SKIP LOCKED`
  and the writes guarded by a lease (leases.py, poll_claims.py, leased_tasks.py, poll_results.py,
  deadline_sweep.py, deliveries.py), the outbox's chained INSERTs fed by one JSON document
  (outbox.py), retention and the gauges' counts.
- **SQLAlchemy Core** on the tables of tables/: for everything else, the plain CRUD of the
  less frequent routes (subscriptions, the event feed, creating clients), where building a query
  from optional conditions reads better than string assembly and speed is not the constraint.

Whichever way, every row that leaves the package is a frozen dataclass built with its fields'
names, so a misspelt field fails `mypy --strict`; a Core query names its columns through the
ORM classes of tables/ and unpacks its typed row, so a misspelt column fails it too (the SQL
text of the other two ways is checked by the tests that run it), and a state column reads as its
StrEnum (tests/unit/test_typed_rows.py). Time is a parameter rather than `now()` in SQL, and
no query function commits: the request or task boundary does (with db.transaction). States and
event types come from service.domain.states: a condition that must match a partial index's
predicate (`state = 'pending'`) spells the enum's value into the SQL text: a generic plan cannot
assume a bound parameter's value, so it would not use the index.
"""

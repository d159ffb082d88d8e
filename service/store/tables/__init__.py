"""The schema: every table of the service, as typed SQLAlchemy 2.0 ORM classes, a module per
feature (`clients`, `tasks`, `checks`, `webhooks`, `check_jobs`) on one declarative base (`base`).

Postgres is the single source of truth. The schedule lives in columns (`tasks.next_poll_at`,
`deliveries.next_attempt_at`) and claimed rows carry a lease (`lease_token`, `lease_until`) so
that a crashed worker's rows come due again and a late write-back changes nothing. The migrations in
migrations/versions must produce exactly this schema (a test compares them).

Every table module is imported here, so `Base.metadata` (Alembic's target in migrations/env.py)
holds every table whichever module a caller imports first.
"""

from __future__ import annotations

from service.store.tables import check_jobs, checks, clients, tasks, webhooks
from service.store.tables.base import Base

# The table modules are imported for what they declare on Base.metadata.
__all__ = ["Base", "check_jobs", "checks", "clients", "tasks", "webhooks"]

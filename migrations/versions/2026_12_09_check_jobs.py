"""Check jobs: a client's list of numbers, its items and rejections; the tasks its items become;
the freshness cache's key (`tasks.number_digest`); job items as scheduled submits; the
`job.completed` event; subscriptions that leave job items out; and the daily check budget.

Expand only (every column added is nullable or has a default, and no constraint an older release
writes against is narrowed): the previous release's worker and scheduler run unchanged on it.

- check_jobs, check_job_items, check_job_rejections: the job, its accepted items (mask and keyed
  digest only; the sealed number waits in the item's scheduled submit) and its rejected ones.
- tasks: `job_pk` and `number_digest`, with the indexes of a job's progress and of `max_age_s`.
- scheduled_submits: the purpose `job_item`, naming its item by (`job_pk`, `job_line`).
- events: `job_pk` (a `job.completed` event is about a job; one per job).
- subscriptions: `include_job_items`. clients: `max_checks_per_day`; client_check_days counts.

Revision ID: check_jobs_0001
Revises: endpoint_health_0001
Create Date: 2026-12-09 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "check_jobs_0001"
down_revision: str | None = "endpoint_health_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENT_TYPES = "type IN ('task.completed', 'task.expired', 'task.failed', 'subscription.disabled')"
EVENT_TYPES_WITH_JOBS = (
    "type IN ('task.completed', 'task.expired', 'task.failed', 'job.completed', "
    "'subscription.disabled')"
)
JOB_STATES = "state IN ('draft', 'queued', 'running', 'paused', 'completed', 'cancelled')"
ITEM_STATES = (
    "state IN ('waiting', 'submitted', 'duplicate', 'cached', 'refused', 'unknown', "
    "'not_submitted')"
)
ACTIVE_JOBS = "state IN ('queued', 'running', 'paused')"


def upgrade() -> None:
    op.create_table(
        "check_jobs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("paused_reason", sa.String(length=16), nullable=True),
        sa.Column("max_age_s", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("recheck", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("fingerprint", sa.LargeBinary(length=32), nullable=True),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("cached", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(JOB_STATES, name=op.f("ck_check_jobs_state")),
        sa.CheckConstraint(
            "paused_reason IN ('client', 'budget', 'upstream')",
            name=op.f("ck_check_jobs_paused_reason"),
        ),
        sa.CheckConstraint(
            "(state = 'paused') = (paused_reason IS NOT NULL)",
            name=op.f("ck_check_jobs_paused_has_reason"),
        ),
        sa.CheckConstraint(
            "items >= 0 AND rejected >= 0 AND duplicates >= 0 AND cached >= 0 "
            "AND items - rejected - duplicates - cached >= 0",
            name=op.f("ck_check_jobs_counts"),
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_check_jobs_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_check_jobs")),
        sa.UniqueConstraint("public_id", name=op.f("uq_check_jobs_public_id")),
        sa.UniqueConstraint(
            "client_id", "idempotency_key", name=op.f("uq_check_jobs_client_id_idempotency_key")
        ),
    )
    op.create_index("ix_check_jobs_client_id_id", "check_jobs", ["client_id", "id"])
    op.create_index("ix_check_jobs_client_id_state_id", "check_jobs", ["client_id", "state", "id"])
    op.create_index(
        "ix_check_jobs_active_state",
        "check_jobs",
        ["state"],
        postgresql_where=sa.text(ACTIVE_JOBS),
    )

    op.create_table(
        "check_job_items",
        sa.Column("job_pk", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("phone_number_masked", sa.String(length=24), nullable=False),
        sa.Column("number_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("first_line", sa.Integer(), nullable=True),
        sa.Column("task_pk", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(ITEM_STATES, name=op.f("ck_check_job_items_state")),
        sa.ForeignKeyConstraint(
            ["job_pk"],
            ["check_jobs.id"],
            name=op.f("fk_check_job_items_job_pk_check_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_pk"],
            ["tasks.id"],
            name=op.f("fk_check_job_items_task_pk_tasks"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("job_pk", "line", name=op.f("pk_check_job_items")),
    )
    op.create_table(
        "check_job_rejections",
        sa.Column("job_pk", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_pk"],
            ["check_jobs.id"],
            name=op.f("fk_check_job_rejections_job_pk_check_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_pk", "line", name=op.f("pk_check_job_rejections")),
    )
    op.create_table(
        "client_check_days",
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("checks", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_client_check_days_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_id", "day", name=op.f("pk_client_check_days")),
    )

    op.add_column("tasks", sa.Column("job_pk", sa.BigInteger(), nullable=True))
    op.add_column("tasks", sa.Column("number_digest", sa.LargeBinary(length=32), nullable=True))
    op.create_foreign_key(
        op.f("fk_tasks_job_pk_check_jobs"),
        "tasks",
        "check_jobs",
        ["job_pk"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(
        "ix_tasks_job_pk_state",
        "tasks",
        ["job_pk", "state"],
        postgresql_where=sa.text("job_pk IS NOT NULL"),
    )
    op.create_index(
        "ix_tasks_client_id_number_digest_completed_at",
        "tasks",
        ["client_id", "number_digest", "completed_at"],
        postgresql_where=sa.text("number_digest IS NOT NULL AND state = 'completed'"),
    )

    op.add_column("scheduled_submits", sa.Column("job_pk", sa.BigInteger(), nullable=True))
    op.add_column("scheduled_submits", sa.Column("job_line", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f("fk_scheduled_submits_job_pk_check_jobs"),
        "scheduled_submits",
        "check_jobs",
        ["job_pk"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_unique_constraint(
        op.f("uq_scheduled_submits_job_pk_job_line"), "scheduled_submits", ["job_pk", "job_line"]
    )
    op.drop_constraint(op.f("ck_scheduled_submits_purpose"), "scheduled_submits", type_="check")
    op.create_check_constraint(
        op.f("ck_scheduled_submits_purpose"),
        "scheduled_submits",
        "purpose IN ('recheck', 'job_item')",
    )
    op.create_check_constraint(
        op.f("ck_scheduled_submits_job_item_names_its_item"),
        "scheduled_submits",
        "(purpose = 'job_item') = (job_pk IS NOT NULL AND job_line IS NOT NULL)",
    )

    op.add_column("events", sa.Column("job_pk", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_events_job_pk_check_jobs"),
        "events",
        "check_jobs",
        ["job_pk"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_unique_constraint(op.f("uq_events_job_pk_type"), "events", ["job_pk", "type"])
    op.drop_constraint(op.f("ck_events_subject"), "events", type_="check")
    op.create_check_constraint(
        op.f("ck_events_subject"), "events", "num_nonnulls(task_pk, subscription_pk, job_pk) = 1"
    )
    op.drop_constraint(op.f("ck_events_type"), "events", type_="check")
    op.create_check_constraint(op.f("ck_events_type"), "events", EVENT_TYPES_WITH_JOBS)

    op.add_column(
        "subscriptions",
        sa.Column(
            "include_job_items", sa.Boolean(), server_default=sa.text("true"), nullable=False
        ),
    )
    op.add_column("clients", sa.Column("max_checks_per_day", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_clients_max_checks_per_day"), "clients", "max_checks_per_day >= 0"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_clients_max_checks_per_day"), "clients", type_="check")
    op.drop_column("clients", "max_checks_per_day")
    op.drop_column("subscriptions", "include_job_items")

    op.execute("DELETE FROM events WHERE job_pk IS NOT NULL")
    op.drop_constraint(op.f("ck_events_type"), "events", type_="check")
    op.create_check_constraint(op.f("ck_events_type"), "events", EVENT_TYPES)
    op.drop_constraint(op.f("ck_events_subject"), "events", type_="check")
    op.create_check_constraint(
        op.f("ck_events_subject"), "events", "(task_pk IS NULL) <> (subscription_pk IS NULL)"
    )
    op.drop_constraint(op.f("uq_events_job_pk_type"), "events", type_="unique")
    op.drop_constraint(op.f("fk_events_job_pk_check_jobs"), "events", type_="foreignkey")
    op.drop_column("events", "job_pk")

    op.execute("DELETE FROM scheduled_submits WHERE purpose = 'job_item'")
    op.drop_constraint(
        op.f("ck_scheduled_submits_job_item_names_its_item"), "scheduled_submits", type_="check"
    )
    op.drop_constraint(op.f("ck_scheduled_submits_purpose"), "scheduled_submits", type_="check")
    op.create_check_constraint(
        op.f("ck_scheduled_submits_purpose"), "scheduled_submits", "purpose IN ('recheck')"
    )
    op.drop_constraint(
        op.f("uq_scheduled_submits_job_pk_job_line"), "scheduled_submits", type_="unique"
    )
    op.drop_constraint(
        op.f("fk_scheduled_submits_job_pk_check_jobs"), "scheduled_submits", type_="foreignkey"
    )
    op.drop_column("scheduled_submits", "job_line")
    op.drop_column("scheduled_submits", "job_pk")

    op.drop_index(
        "ix_tasks_client_id_number_digest_completed_at",
        table_name="tasks",
        postgresql_where=sa.text("number_digest IS NOT NULL AND state = 'completed'"),
    )
    op.drop_index(
        "ix_tasks_job_pk_state", table_name="tasks", postgresql_where=sa.text("job_pk IS NOT NULL")
    )
    op.drop_constraint(op.f("fk_tasks_job_pk_check_jobs"), "tasks", type_="foreignkey")
    op.drop_column("tasks", "number_digest")
    op.drop_column("tasks", "job_pk")

    op.drop_table("client_check_days")
    op.drop_table("check_job_rejections")
    op.drop_table("check_job_items")
    op.drop_index("ix_check_jobs_active_state", table_name="check_jobs")
    op.drop_index("ix_check_jobs_client_id_state_id", table_name="check_jobs")
    op.drop_index("ix_check_jobs_client_id_id", table_name="check_jobs")
    op.drop_table("check_jobs")

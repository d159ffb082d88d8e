"""A customer of phonebridge, its API keys, and its daily count of upstream checks (the
budget's ledger)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    Double,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.store.tables.base import Base


class Client(Base):
    """A customer of phonebridge; owns API keys, tasks, subscriptions and events."""

    __tablename__ = "clients"
    __table_args__ = (
        CheckConstraint("max_rps >= 0 AND max_pending >= 0", name="limits"),
        CheckConstraint("max_checks_per_day >= 0", name="max_checks_per_day"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Intake limits of this client alone: NULL follows PHONEBRIDGE_CLIENT_MAX_RPS /
    # PHONEBRIDGE_CLIENT_MAX_PENDING, 0 means no limit.
    max_rps: Mapped[int | None] = mapped_column(Integer)
    max_pending: Mapped[int | None] = mapped_column(Integer)
    # Upstream checks this client may cause per UTC day: NULL follows
    # PHONEBRIDGE_CLIENT_MAX_CHECKS_PER_DAY, 0 means no limit (ClientCheckDay counts them).
    max_checks_per_day: Mapped[int | None] = mapped_column(Integer)
    # This client's p95 detection-lag target for the adaptive schedule (service/domain/schedule.py);
    # NULL follows PHONEBRIDGE_POLL_TARGET_P95_S.
    poll_target_p95_s: Mapped[float | None] = mapped_column(Double)
    # The client's upstream callback URL (/hooks/accuauth/<token>): the token is derived from the
    # deployment's secret key, the client id and the generation (checks/callback_hints.py), and
    # only its SHA-256 is kept, set on first use. Hints look the client up by that digest, so the
    # lookup's timing says nothing about the token. After a rotation the previous digest is
    # still accepted until previous_callback_valid_until.
    callback_generation: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    callback_token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    previous_callback_token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), index=True)
    previous_callback_valid_until: Mapped[datetime | None]


class ApiKey(Base):
    """An API key; only the SHA-256 of the key is stored, looked up by that digest."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # The first characters of the key, shown to operators to tell keys apart; not a secret.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]
    # Written at most once a minute per key by the API (service/api/auth.py), not per request.
    last_used_at: Mapped[datetime | None]


class ClientCheckDay(Base):
    """The upstream checks one client caused on one UTC day (single checks, job items,
    re-checks), counted when each submit is written, before its call: the budget's ledger."""

    __tablename__ = "client_check_days"

    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    checks: Mapped[int] = mapped_column(Integer, server_default=text("0"))

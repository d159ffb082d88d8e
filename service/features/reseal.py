"""`phonebridge secret-key reseal`: what is kept encrypted for a long time rewritten under the
current PHONEBRIDGE_SECRET_KEY, the last step of a rotation (docs/operations.md).

Webhook secrets live as long as their subscription, a re-check's sealed number as long as its
re-checks may come (days), and a check job item's sealed number until the item is submitted (a
paused job's, or one waiting for its client's daily budget, for as long as that lasts), so what
was encrypted under an old secret would need that secret in PHONEBRIDGE_SECRET_KEY_PREVIOUS for
that long; resealing rewrites it under the current one, after which the old secret can be dropped
once the short-lived things (portal sessions, idempotency fingerprints) have expired. Safe to run
at any time and more than once, while everything runs: each row is rewritten only if it still
holds what was read.

One loop (`_reseal_all`) walks every kind of row, each a `KeptKind`: its query (rows after a
position, in order), how a row is re-encrypted (None: already under the current key), how it is
written back, and how an unreadable one is named.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.sealed_numbers import (
    NumberSeal,
    SealedNumberError,
    job_item_binding,
    number_seal_for,
    recheck_binding,
)
from service.store import job_items as item_store
from service.store import scheduled_submits as submit_store
from service.store import subscriptions as subscription_store
from service.store.db import create_engine_for, session_factory, transaction
from service.store.job_items import SealedItemNumber
from service.store.scheduled_submits import SealedNumberRead, SealedRecheckNumber
from service.store.subscriptions import StoredSecrets
from service.webhooks.encryption import SecretCipher, SecretDecryptionError, cipher_for

BATCH = 500


@dataclass
class ResealCounts:
    """What a reseal did to one kind of row: rewritten, already under the current key, changed
    by someone else between the read and the write (the next reseal takes them), and those that
    open under no listed key, named (a subscription's id, a re-check's task, a job's line), never
    shown."""

    resealed: int = 0
    current: int = 0
    changed: int = 0
    unreadable: list[str] = field(default_factory=list)


@dataclass
class ResealReport:
    webhook_secrets: ResealCounts = field(default_factory=ResealCounts)
    recheck_numbers: ResealCounts = field(default_factory=ResealCounts)
    job_item_numbers: ResealCounts = field(default_factory=ResealCounts)

    @property
    def unreadable(self) -> list[str]:
        return (
            self.webhook_secrets.unreadable
            + self.recheck_numbers.unreadable
            + self.job_item_numbers.unreadable
        )


class Unreadable(Exception):
    """A row that opens under no listed key."""


Row = TypeVar("Row")
Rewritten = TypeVar("Rewritten")


@dataclass(frozen=True)
class KeptKind(Generic[Row, Rewritten]):
    """One kind of row kept encrypted: `rows_after(session, position, limit)` in `position`
    order, `rewrite(row)` under the current key (None: it already is; raises Unreadable),
    `write(session, row, rewritten)` unless the row changed since it was read (False), and
    `named(row)` for an unreadable one."""

    rows_after: Callable[[AsyncSession, int, int], Awaitable[list[Row]]]
    position: Callable[[Row], int]
    rewrite: Callable[[Row], Rewritten | None]
    write: Callable[[AsyncSession, Row, Rewritten], Awaitable[bool]]
    named: Callable[[Row], str]


async def reseal_kept_secrets(settings: Settings) -> ResealReport:
    """Re-encrypt every webhook secret, re-check number and job item number not under the
    current key."""
    report = ResealReport()
    seal = number_seal_for(settings)
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=1)
    sessions = session_factory(engine)
    try:
        await _reseal_all(sessions, _webhook_secrets(cipher_for(settings)), report.webhook_secrets)
        await _reseal_all(sessions, _recheck_numbers(seal), report.recheck_numbers)
        await _reseal_all(sessions, _job_item_numbers(seal), report.job_item_numbers)
    finally:
        await engine.dispose()
    return report


async def _reseal_all(
    sessions: async_sessionmaker[AsyncSession],
    kind: KeptKind[Row, Rewritten],
    counts: ResealCounts,
) -> None:
    after = 0
    while True:
        async with transaction(sessions) as session:
            batch = await kind.rows_after(session, after, BATCH)
        if not batch:
            return
        for row in batch:
            try:
                rewritten = kind.rewrite(row)
            except Unreadable:
                counts.unreadable.append(kind.named(row))
                continue
            if rewritten is None:
                counts.current += 1
                continue
            async with transaction(sessions) as session:
                if await kind.write(session, row, rewritten):
                    counts.resealed += 1
                else:
                    counts.changed += 1
        after = kind.position(batch[-1])


def _webhook_secrets(
    cipher: SecretCipher,
) -> KeptKind[StoredSecrets, tuple[bytes, bytes | None]]:
    """A subscription's secret and, during a secret rotation, its previous one."""

    def rewrite(stored: StoredSecrets) -> tuple[bytes, bytes | None] | None:
        binding = stored.public_id
        previous = stored.previous_secret_encrypted
        if cipher.is_current(stored.secret_encrypted, binding) and (
            previous is None or cipher.is_current(previous, binding)
        ):
            return None
        try:
            secret = cipher.encrypt(cipher.decrypt(stored.secret_encrypted, binding), binding)
            if previous is not None:
                previous = cipher.encrypt(cipher.decrypt(previous, binding), binding)
        except SecretDecryptionError as error:
            raise Unreadable from error
        return secret, previous

    async def write(
        session: AsyncSession, stored: StoredSecrets, rewritten: tuple[bytes, bytes | None]
    ) -> bool:
        return await subscription_store.replace_stored_secrets(session, stored, *rewritten)

    return KeptKind(
        rows_after=subscription_store.stored_secrets_after,
        position=lambda stored: stored.pk,
        rewrite=rewrite,
        write=write,
        named=lambda stored: f"subscription {stored.public_id}",
    )


Sealed = TypeVar("Sealed", bound=SealedNumberRead)


def _sealed_numbers(
    seal: NumberSeal,
    rows_after: Callable[[AsyncSession, int, int], Awaitable[list[Sealed]]],
    binding: Callable[[Sealed], str],
    named: Callable[[Sealed], str],
) -> KeptKind[Sealed, bytes]:
    """Numbers kept sealed in scheduled submits, each bound to what it belongs to."""

    def rewrite(stored: Sealed) -> bytes | None:
        belongs_to = binding(stored)
        if seal.is_current(stored.phone_number_sealed, belongs_to):
            return None
        try:
            return seal.seal(seal.open(stored.phone_number_sealed, belongs_to), belongs_to)
        except SealedNumberError as error:
            raise Unreadable from error

    return KeptKind(
        rows_after=rows_after,
        position=lambda stored: stored.id,
        rewrite=rewrite,
        write=submit_store.replace_sealed_number,
        named=named,
    )


def _recheck_numbers(seal: NumberSeal) -> KeptKind[SealedRecheckNumber, bytes]:
    return _sealed_numbers(
        seal,
        submit_store.sealed_recheck_numbers_after,
        lambda stored: recheck_binding(stored.client_id, stored.task_id),
        lambda stored: f"re-check of task {stored.task_id!r} (client {stored.client_id})",
    )


def _job_item_numbers(seal: NumberSeal) -> KeptKind[SealedItemNumber, bytes]:
    return _sealed_numbers(
        seal,
        item_store.sealed_item_numbers_after,
        lambda stored: job_item_binding(stored.client_id, stored.job_id, stored.line),
        lambda stored: f"item {stored.line} of job {stored.job_id} (client {stored.client_id})",
    )

"""`phonebridge secret-key reseal`: what is kept encrypted for a long time rewritten under the
current PHONEBRIDGE_SECRET_KEY, the last step of a rotation (docs/operations.md).

Webhook secrets live as long as their subscription and a re-check's sealed number as long as its
re-checks may come (days), so what was encrypted under an old secret would need that secret in
PHONEBRIDGE_SECRET_KEY_PREVIOUS for that long; resealing rewrites it under the current one, after
which the old secret can be dropped once the short-lived things (portal sessions, idempotency
fingerprints) have expired. Safe to run at any time and more than once, while everything runs:
each row is rewritten only if it still holds what was read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.sealed_numbers import NumberSeal, SealedNumberError, number_seal_for, recheck_binding
from service.store import scheduled_submits as submit_store
from service.store import subscriptions as subscription_store
from service.store.db import create_engine_for, session_factory, transaction
from service.store.scheduled_submits import SealedRecheckNumber
from service.store.subscriptions import StoredSecrets
from service.webhooks.encryption import SecretCipher, SecretDecryptionError, cipher_for

BATCH = 500


@dataclass
class ResealCounts:
    """What a reseal did to one kind of row: rewritten, already under the current key, changed
    by someone else between the read and the write (the next reseal takes them), and those that
    open under no listed key, named (a subscription's id, a re-check's task), never shown."""

    resealed: int = 0
    current: int = 0
    changed: int = 0
    unreadable: list[str] = field(default_factory=list)


@dataclass
class ResealReport:
    webhook_secrets: ResealCounts = field(default_factory=ResealCounts)
    recheck_numbers: ResealCounts = field(default_factory=ResealCounts)

    @property
    def unreadable(self) -> list[str]:
        return self.webhook_secrets.unreadable + self.recheck_numbers.unreadable


async def reseal_kept_secrets(settings: Settings) -> ResealReport:
    """Re-encrypt every webhook secret and re-check number not under the current key."""
    report = ResealReport()
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=1)
    sessions = session_factory(engine)
    try:
        await _reseal_webhook_secrets(sessions, cipher_for(settings), report.webhook_secrets)
        await _reseal_recheck_numbers(sessions, number_seal_for(settings), report.recheck_numbers)
    finally:
        await engine.dispose()
    return report


async def _reseal_webhook_secrets(
    sessions: async_sessionmaker[AsyncSession], cipher: SecretCipher, counts: ResealCounts
) -> None:
    after_pk = 0
    while True:
        async with transaction(sessions) as session:
            batch = await subscription_store.stored_secrets_after(session, after_pk, BATCH)
        if not batch:
            return
        for stored in batch:
            await _reseal_subscription(sessions, cipher, stored, counts)
        after_pk = batch[-1].pk


async def _reseal_subscription(
    sessions: async_sessionmaker[AsyncSession],
    cipher: SecretCipher,
    stored: StoredSecrets,
    counts: ResealCounts,
) -> None:
    binding = stored.public_id
    previous = stored.previous_secret_encrypted
    if cipher.is_current(stored.secret_encrypted, binding) and (
        previous is None or cipher.is_current(previous, binding)
    ):
        counts.current += 1
        return
    try:
        secret = cipher.encrypt(cipher.decrypt(stored.secret_encrypted, binding), binding)
        if previous is not None:
            previous = cipher.encrypt(cipher.decrypt(previous, binding), binding)
    except SecretDecryptionError:
        counts.unreadable.append(f"subscription {binding}")
        return
    async with transaction(sessions) as session:
        if await subscription_store.replace_stored_secrets(session, stored, secret, previous):
            counts.resealed += 1
        else:
            counts.changed += 1


async def _reseal_recheck_numbers(
    sessions: async_sessionmaker[AsyncSession], seal: NumberSeal, counts: ResealCounts
) -> None:
    after_id = 0
    while True:
        async with transaction(sessions) as session:
            batch = await submit_store.sealed_recheck_numbers_after(session, after_id, BATCH)
        if not batch:
            return
        for stored in batch:
            await _reseal_number(sessions, seal, stored, counts)
        after_id = batch[-1].id


async def _reseal_number(
    sessions: async_sessionmaker[AsyncSession],
    seal: NumberSeal,
    stored: SealedRecheckNumber,
    counts: ResealCounts,
) -> None:
    binding = recheck_binding(stored.client_id, stored.task_id)
    if seal.is_current(stored.phone_number_sealed, binding):
        counts.current += 1
        return
    try:
        resealed = seal.seal(seal.open(stored.phone_number_sealed, binding), binding)
    except SealedNumberError:
        counts.unreadable.append(f"re-check of task {stored.task_id!r} (client {stored.client_id})")
        return
    async with transaction(sessions) as session:
        if await submit_store.replace_sealed_number(session, stored, resealed):
            counts.resealed += 1
        else:
            counts.changed += 1

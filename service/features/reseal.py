"""`phonebridge secret-key reseal`: every stored webhook secret encrypted under the current
PHONEBRIDGE_SECRET_KEY, the last step of a rotation (docs/operations.md).

Webhook secrets live as long as their subscription, so those encrypted under an old secret would
need that secret listed in PHONEBRIDGE_SECRET_KEY_PREVIOUS forever; resealing rewrites them under
the current one, after which the old secret can be dropped. Safe to run at any time and more than
once, while everything runs: each row is rewritten only if it still holds what was read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.store import subscriptions as subscription_store
from service.store.db import create_engine_for, session_factory, transaction
from service.store.subscriptions import StoredSecrets
from service.webhooks.encryption import SecretCipher, SecretDecryptionError, cipher_for

BATCH = 500


@dataclass
class ResealReport:
    """What a reseal did: rows rewritten, rows already under the current key, and the public
    ids of subscriptions whose secrets open under no listed key (never the secrets)."""

    resealed: int = 0
    current: int = 0
    # Rotated by their client between the read and the write: the next reseal takes them.
    changed: int = 0
    unreadable: list[str] = field(default_factory=list)


async def reseal_webhook_secrets(settings: Settings) -> ResealReport:
    """Re-encrypt every subscription's secrets that are not under the current key."""
    cipher = cipher_for(settings)
    report = ResealReport()
    engine = create_engine_for(settings.sqlalchemy_url, pool_size=1)
    sessions = session_factory(engine)
    try:
        after_pk = 0
        while True:
            async with transaction(sessions) as session:
                batch = await subscription_store.stored_secrets_after(session, after_pk, BATCH)
            if not batch:
                return report
            for stored in batch:
                await _reseal_one(sessions, cipher, stored, report)
            after_pk = batch[-1].pk
    finally:
        await engine.dispose()


async def _reseal_one(
    sessions: async_sessionmaker[AsyncSession],
    cipher: SecretCipher,
    stored: StoredSecrets,
    report: ResealReport,
) -> None:
    binding = stored.public_id
    previous = stored.previous_secret_encrypted
    if cipher.is_current(stored.secret_encrypted, binding) and (
        previous is None or cipher.is_current(previous, binding)
    ):
        report.current += 1
        return
    try:
        secret = cipher.encrypt(cipher.decrypt(stored.secret_encrypted, binding), binding)
        if previous is not None:
            previous = cipher.encrypt(cipher.decrypt(previous, binding), binding)
    except SecretDecryptionError:
        report.unreadable.append(binding)
        return
    async with transaction(sessions) as session:
        if await subscription_store.replace_stored_secrets(session, stored, secret, previous):
            report.resealed += 1
        else:
            report.changed += 1

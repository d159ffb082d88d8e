"""`phonebridge secret-key reseal` (service/features/reseal.py), the last step of a rotation of
PHONEBRIDGE_SECRET_KEY: every stored webhook secret, current and rotated-out alike, ends up under
the current key, so the old key can be dropped; a secret under a key no longer listed is named by
its subscription and left as it is."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.features.reseal import reseal_webhook_secrets
from service.store.db import create_engine_for, session_factory, transaction
from service.store.migrate import upgrade_to_head
from service.webhooks.encryption import cipher_for
from tests.support.factories import insert_client, insert_subscription
from tests.support.settings import make_settings

OLD = "the-old-secret-key-of-this-deployment"
NEW = "the-new-secret-key-of-this-deployment"
STRANGER = "a-secret-key-nobody-listed-anywhere"


async def store_secrets(
    sessions: async_sessionmaker[AsyncSession],
    pk: int,
    settings: Settings,
    secret: str,
    previous: str | None = None,
) -> str:
    """Encrypt the subscription's secrets as `settings` would; its public id."""
    async with transaction(sessions) as session:
        public_id = (
            await session.execute(
                text("SELECT public_id FROM subscriptions WHERE id = :pk"), {"pk": pk}
            )
        ).scalar_one()
        cipher = cipher_for(settings)
        await session.execute(
            text(
                "UPDATE subscriptions SET secret_encrypted = :secret, "
                "previous_secret_encrypted = :previous WHERE id = :pk"
            ),
            {
                "pk": pk,
                "secret": cipher.encrypt(secret, public_id),
                "previous": None if previous is None else cipher.encrypt(previous, public_id),
            },
        )
    return str(public_id)


async def stored(sessions: async_sessionmaker[AsyncSession], pk: int) -> tuple[bytes, bytes | None]:
    async with transaction(sessions) as session:
        row = (
            await session.execute(
                text(
                    "SELECT secret_encrypted, previous_secret_encrypted FROM subscriptions "
                    "WHERE id = :pk"
                ),
                {"pk": pk},
            )
        ).one()
    return bytes(row[0]), None if row[1] is None else bytes(row[1])


async def test_reseal_moves_every_secret_to_the_current_key_and_names_the_unreadable(
    empty_database: str, redis_url: str
) -> None:
    upgrade_to_head(empty_database)
    before = make_settings(empty_database, redis_url, secret_key=OLD)
    rotated = make_settings(empty_database, redis_url, secret_key=NEW, secret_key_previous=OLD)
    only_new = make_settings(empty_database, redis_url, secret_key=NEW)
    engine = create_engine_for(before.sqlalchemy_url, pool_size=1)
    sessions = session_factory(engine)
    try:
        client_id = await insert_client(sessions)
        rotating = await insert_subscription(sessions, client_id, ["task.completed"])
        plain = await insert_subscription(sessions, client_id, ["task.completed"])
        lost = await insert_subscription(sessions, client_id, ["task.completed"])
        rotating_id = await store_secrets(sessions, rotating, before, "whsec_new", "whsec_old")
        plain_id = await store_secrets(sessions, plain, before, "whsec_plain")
        lost_id = await store_secrets(
            sessions, lost, make_settings(empty_database, redis_url, secret_key=STRANGER), "x"
        )
        lost_before = await stored(sessions, lost)

        report = await reseal_webhook_secrets(rotated)

        assert (report.resealed, report.current, report.unreadable) == (2, 0, [lost_id])
        cipher = cipher_for(only_new)
        secret, previous = await stored(sessions, rotating)
        assert cipher.decrypt(secret, rotating_id) == "whsec_new"
        assert previous is not None
        assert cipher.decrypt(previous, rotating_id) == "whsec_old"
        assert cipher.decrypt((await stored(sessions, plain))[0], plain_id) == "whsec_plain"
        assert await stored(sessions, lost) == lost_before

        again = await reseal_webhook_secrets(rotated)
        assert (again.resealed, again.current, again.unreadable) == (0, 2, [lost_id])
    finally:
        await engine.dispose()

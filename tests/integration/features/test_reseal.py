"""`phonebridge secret-key reseal` (service/features/reseal.py), the last step of a rotation of
PHONEBRIDGE_SECRET_KEY: every stored webhook secret (current and rotated-out alike) and every
number kept for re-checks ends up under the current key, so the old key can be dropped; what is
under a key no longer listed is named (its subscription, its task) and left as it is."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.clock import utc_now
from service.config import Settings
from service.features.reseal import reseal_kept_secrets
from service.sealed_numbers import number_seal_for, recheck_binding
from service.store.db import create_engine_for, session_factory, transaction
from service.store.migrate import upgrade_to_head
from service.store.scheduled_submits import hold_number_for_rechecks
from service.webhooks.encryption import cipher_for
from tests.support.commands import clean_environment, run_command
from tests.support.factories import insert_client, insert_subscription, insert_tasks
from tests.support.settings import make_settings

OLD = "the-old-secret-key-of-this-deployment"
NEW = "the-new-secret-key-of-this-deployment"
STRANGER = "a-secret-key-nobody-listed-anywhere"
NUMBER = "525512341234"


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


async def hold_number(
    sessions: async_sessionmaker[AsyncSession], client_id: int, task_id: str, settings: Settings
) -> int:
    """A re-check's number, sealed as `settings` would seal it; the task's row id."""
    [task_pk] = await insert_tasks(sessions, client_id, [task_id])
    sealed = number_seal_for(settings).seal(NUMBER, recheck_binding(client_id, task_id))
    async with transaction(sessions) as session:
        await hold_number_for_rechecks(
            session, client_id=client_id, task_pk=task_pk, sealed=sealed, due_at=None, now=utc_now()
        )
    return task_pk


async def held_number(sessions: async_sessionmaker[AsyncSession], task_pk: int) -> bytes:
    async with transaction(sessions) as session:
        return bytes(
            (
                await session.execute(
                    text("SELECT phone_number_sealed FROM scheduled_submits WHERE task_pk = :pk"),
                    {"pk": task_pk},
                )
            ).scalar_one()
        )


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
        number_pk = await hold_number(sessions, client_id, "T-kept", before)
        stranger = make_settings(empty_database, redis_url, secret_key=STRANGER)
        lost_number_pk = await hold_number(sessions, client_id, "T-lost", stranger)
        lost_number = await held_number(sessions, lost_number_pk)

        report = await reseal_kept_secrets(rotated)

        secrets = report.webhook_secrets
        assert (secrets.resealed, secrets.current, secrets.changed) == (2, 0, 0)
        assert secrets.unreadable == [f"subscription {lost_id}"]
        numbers = report.recheck_numbers
        assert (numbers.resealed, numbers.current, numbers.changed) == (1, 0, 0)
        assert numbers.unreadable == [f"re-check of task 'T-lost' (client {client_id})"]
        cipher = cipher_for(only_new)
        secret, previous = await stored(sessions, rotating)
        assert cipher.decrypt(secret, rotating_id) == "whsec_new"
        assert previous is not None
        assert cipher.decrypt(previous, rotating_id) == "whsec_old"
        assert cipher.decrypt((await stored(sessions, plain))[0], plain_id) == "whsec_plain"
        assert await stored(sessions, lost) == lost_before
        kept = await held_number(sessions, number_pk)
        assert number_seal_for(only_new).open(kept, recheck_binding(client_id, "T-kept")) == NUMBER
        assert await held_number(sessions, lost_number_pk) == lost_number

        again = await reseal_kept_secrets(rotated)
        assert (again.webhook_secrets.resealed, again.webhook_secrets.current) == (0, 2)
        assert (again.recheck_numbers.resealed, again.recheck_numbers.current) == (0, 1)
        assert len(again.unreadable) == 2
    finally:
        await engine.dispose()


async def test_the_reseal_command_says_what_it_did_and_fails_on_the_unreadable(
    empty_database: str, redis_url: str, tmp_path: Path
) -> None:
    upgrade_to_head(empty_database)
    engine = create_engine_for(empty_database, pool_size=1)
    sessions = session_factory(engine)
    try:
        client_id = await insert_client(sessions)
        old = await insert_subscription(sessions, client_id, ["task.completed"])
        lost = await insert_subscription(sessions, client_id, ["task.completed"])
        await store_secrets(
            sessions, old, make_settings(empty_database, redis_url, secret_key=OLD), "a"
        )
        lost_id = await store_secrets(
            sessions, lost, make_settings(empty_database, redis_url, secret_key=STRANGER), "b"
        )
    finally:
        await engine.dispose()
    env = clean_environment(
        PHONEBRIDGE_DATABASE_URL=empty_database,
        PHONEBRIDGE_SECRET_KEY=NEW,
        PHONEBRIDGE_SECRET_KEY_PREVIOUS=OLD,
    )

    done = run_command(env, tmp_path, "secret-key", "reseal")

    assert done.returncode == 1, done.stderr
    assert "webhook secrets: 1 resealed" in done.stdout
    assert "re-check numbers: 0 resealed" in done.stdout
    assert f"subscription {lost_id}" in done.stderr
    for key in (OLD, NEW, STRANGER):
        assert key not in done.stdout + done.stderr
